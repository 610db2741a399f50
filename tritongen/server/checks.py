"""What is checked before a repository is served: that every served file is the one `build` wrote (the manifest's
sha256), and that nothing in the repository would stop a real tritonserver started on it.

Measured on tritonserver 2.51 (`--model-control-mode=none`, the generated compose file's mode): every directory at
the top of the repository is polled as a model, hidden ones included, and one without a config.pbtxt (or a broken
symlink) makes the server refuse to start ("Poll failed for model directory"); files at the top level are ignored,
and so are non-numeric folders inside a model folder. A served version folder whose python backend model.py is
missing makes the server hang in start-up rather than fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError
from tritongen.repository import CONFIG, META_DIR, read_manifest, versions_of

SCRATCH_PREFIX = ".tritongen-"  # what an interrupted build may leave (see tritongen.repository)
_CACHES = ("__pycache__",)  # written by Python next to a model.py it imported: never served, never vouched for


def served_versions(model_dir: Path, config: Any) -> list[int]:
    """The versions Triton loads under the config's version policy (default: the latest one)."""
    versions = versions_of(model_dir)
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice") if config.HasField("version_policy") else "latest"
    if which == "all":
        return versions
    if which == "specific":
        return [v for v in versions if v in set(policy.specific.versions)]
    count = policy.latest.num_versions if which == "latest" and config.HasField("version_policy") else 1
    return versions[-max(1, count):] if versions else []


def artifact_problems(version_dir: Path) -> list[str]:
    """How the files of a version differ from what its manifest says `build` wrote (empty: every file checks out).

    Every file outside tritongen/ must be listed in the manifest's `artifacts` with its sha256, and be unchanged.
    """
    from tritongen.checkpoint import sha256_of

    try:
        manifest = read_manifest(version_dir)
    except TritongenError as exc:
        return [exc.message]
    artifacts = manifest.get("artifacts")
    # A pipeline's ensemble is its config alone: its versions hold no files (and any found there were planted).
    if not isinstance(artifacts, dict) or (not artifacts and manifest.get("format") != "ensemble"):
        return [f"the manifest of {version_dir} lists no artifacts with their sha256"]
    problems = []
    for name, digest in sorted(artifacts.items()):
        path = version_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"the manifest lists '{name}', which is outside {version_dir}")
        elif not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256_of(path) != digest:
            problems.append(f"{path} changed after the build (its sha256 is not the one in the manifest)")
    for path in sorted(version_dir.rglob("*")):
        relative = path.relative_to(version_dir)
        if relative.parts[0] == META_DIR or any(part in _CACHES for part in relative.parts):
            continue
        if (path.is_file() or path.is_symlink()) and relative.as_posix() not in artifacts:
            problems.append(f"{path} was not written by the build")
    return problems


def foreign_entries(repository: Path) -> list[str]:
    """Entries of the repository that would stop a real tritonserver started on it, each with how to fix it."""
    problems = []
    for entry in sorted(repository.iterdir()):
        if entry.is_symlink() and not entry.exists():
            problems.append(f"'{entry.name}' is a broken symbolic link: a tritonserver started on {repository} "
                            f"refuses to start; remove it (rm {entry})")
        elif not entry.is_dir():
            continue  # files at the top level are ignored by Triton
        elif not (entry / CONFIG).is_file():
            why = (" (the scratch folder of a build that was interrupted, or is still running)"
                   if entry.name.startswith(SCRATCH_PREFIX) else "")
            problems.append(f"'{entry.name}/'{why} has no {CONFIG}: a tritonserver started on {repository} polls "
                            f"every folder as a model and refuses to start ('Poll failed for model directory'); "
                            f"remove it once no build is running (rm -r {entry}), or move it out of the repository")
        elif entry.name.startswith("."):
            problems.append(f"'{entry.name}/' is a hidden folder with a {CONFIG}: tritongen ignores it but Triton "
                            f"loads it as a model; rename it or move it out of the repository")
    return problems
