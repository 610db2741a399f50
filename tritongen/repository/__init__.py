"""The model repository: layout, versions (under a lock), the model-directory value, manifests, atomic writes,
backups, a build's workspace outside the served tree, and installs that keep every moment consistent.

    layout.py       versions, manifest, reference data, `write_text_atomic`, `backup_path`, `check_repository_dir`
    model_dir.py    `ModelDir` / `read_model_dir`: a model folder read once
    lock.py         `model_lock`: one writer per model
    workspace.py    `build_workspace` and `sweep_stale`: scratch folders and what killed builds left
    install.py      `install_staged`: one atomic step per model, journaled where it cannot be
    transaction.py  `building`: the above in the order a build needs them
"""

from tritongen.repository.install import Installed, install_model_version, install_staged, recover_install, swap_paths
from tritongen.repository.layout import (
    CONFIG,
    MANIFEST,
    META_DIR,
    REFERENCE,
    backup_path,
    check_repository_dir,
    load_reference,
    models_in,
    next_version,
    read_manifest,
    resolve_version,
    save_reference,
    versions_of,
    writable,
    write_manifest,
    write_text_atomic,
)
from tritongen.repository.lock import LOCK_PREFIX, model_lock, model_locks
from tritongen.repository.model_dir import ModelDir, model_dirs, read_model_dir
from tritongen.repository.transaction import RepositoryBuild, building
from tritongen.repository.workspace import WORKSPACE_PREFIX, build_workspace, sweep_stale, workspace_home

__all__ = [
    "CONFIG", "LOCK_PREFIX", "MANIFEST", "META_DIR", "REFERENCE", "WORKSPACE_PREFIX", "Installed", "ModelDir",
    "RepositoryBuild", "backup_path", "build_workspace", "building", "check_repository_dir", "install_model_version",
    "install_staged", "load_reference", "model_dirs", "model_lock", "model_locks", "models_in", "next_version",
    "read_manifest", "read_model_dir", "recover_install", "resolve_version", "save_reference", "swap_paths",
    "sweep_stale", "versions_of", "workspace_home", "writable", "write_manifest", "write_text_atomic",
]
