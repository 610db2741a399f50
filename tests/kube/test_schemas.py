"""The vendored CRDs are the published files, unmodified, and the validators built from them reject what the API
server would."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from tests.kube.validation import SCHEMAS, crd, kubernetes_versions, sources, structural, validate


def test_vendored_crds_are_the_published_files():
    entries = sources()
    assert {e["kind"] for e in entries} == {"PodMonitor", "ServiceMonitor", "ScaledObject", "InferenceService",
                                            "ServingRuntime"}
    for entry in entries:
        data = gzip.decompress((SCHEMAS / entry["file"]).read_bytes())
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's object id of the file
        assert blob == entry["git_blob"], f"{entry['file']} differs from {entry['url']}"
        assert entry["url"].endswith(f"/{entry['tag']}/{entry['path']}")
        assert crd(entry["kind"])["spec"]["names"]["kind"] == entry["kind"]


def test_kubernetes_range_is_bundled():
    versions = kubernetes_versions()
    assert versions[0].startswith("1.27") and versions[-1].startswith("1.37") and len(versions) == 11


def test_structural_rules():
    schema = structural({"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": True, "type": "string"},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {"type": "string"}}},
        "maybe": {"type": "string", "nullable": True}}})
    assert schema["additionalProperties"] is False and "type" not in schema["properties"]["port"]
    assert "additionalProperties" not in schema["properties"]["free"]
    assert schema["properties"]["maybe"]["type"] == ["string", "null"]


def test_a_kind_without_schema_or_a_wrong_api_version_fails():
    with pytest.raises(AssertionError, match="serves"):
        validate({"apiVersion": "monitoring.coreos.com/v2", "kind": "PodMonitor", "metadata": {"name": "x"}, "spec": {}})
    with pytest.raises(AssertionError, match="no schema"):
        validate({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}})
