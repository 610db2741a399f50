"""Where a tritonserver binary is and what it needs to run: its backends, the python backend stub for this Python,
its libraries and environment."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tritongen.errors import TritongenError

_INSTALL_HINT = "pip install 'tritongen[server]' (nvidia-pytriton==0.7.0), or pass --tritonserver PATH"


@dataclass(frozen=True)
class TritonInstall:
    """Where a tritonserver binary and what it needs at run time live."""

    binary: Path
    # Directory whose subdirectories are backends (python/, onnxruntime/, ...); None: the server's default.
    backends: Path | None
    # The python backend stub built for the running Python (nvidia-pytriton ships one per Python version).
    python_stub: Path | None
    library_dirs: tuple[Path, ...]  # prepended to LD_LIBRARY_PATH

    @property
    def caches(self) -> Path | None:
        """The response cache implementations next to the binary (nvidia-pytriton ships `local`), if any."""
        found = self.binary.parent.parent / "caches"
        return found if found.is_dir() else None

    @property
    def backend_names(self) -> frozenset[str]:
        root = self.backends or Path("/opt/tritonserver/backends")
        if not root.is_dir():
            return frozenset()
        return frozenset(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def find_tritonserver(tritonserver: str | Path | None = None) -> TritonInstall:
    """Locate tritonserver: the given path, else the nvidia-pytriton wheel's, else the one on PATH."""
    if tritonserver is not None:
        binary = Path(tritonserver).expanduser()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise TritongenError(f"--tritonserver '{tritonserver}' is not an executable file",
                                 "give a tritonserver binary, or leave --tritonserver out to use nvidia-pytriton's")
        return _install_from_binary(binary.resolve())
    wheel_binary = _pytriton_binary()
    if wheel_binary is not None:
        return _install_from_binary(wheel_binary)
    on_path = shutil.which("tritonserver")
    if on_path:
        return _install_from_binary(Path(on_path).resolve())
    raise TritongenError("no tritonserver binary found: nvidia-pytriton is not installed and none is on PATH",
                         _INSTALL_HINT)


def _pytriton_binary() -> Path | None:
    import importlib.util

    found = importlib.util.find_spec("pytriton")
    if found is None or not found.submodule_search_locations:
        return None
    binary = Path(next(iter(found.submodule_search_locations))) / "tritonserver" / "bin" / "tritonserver"
    return binary if binary.is_file() else None


def _install_from_binary(binary: Path) -> TritonInstall:
    dist = binary.parent.parent  # .../tritonserver/{bin,backends,python_backend_stubs}
    stubs = dist / "python_backend_stubs"
    if stubs.is_dir():
        # nvidia-pytriton layout: its stub and backend libraries find their shared libraries through an RPATH
        # relative to where the wheel put them, which breaks once copied; LD_LIBRARY_PATH restores it.
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stub = stubs / version / "triton_python_backend_stub"
        if not stub.is_file():
            have = ", ".join(sorted(p.name for p in stubs.iterdir()))
            raise TritongenError(f"nvidia-pytriton has no python backend stub for Python {version} (it has {have})",
                                 "run tritongen with one of those Python versions")
        libs = dist.parent.parent / "nvidia_pytriton.libs"
        return TritonInstall(binary, dist / "backends", stub, (libs,) if libs.is_dir() else ())
    backends = dist / "backends"
    return TritonInstall(binary, backends if backends.is_dir() else None, None, ())


def prepare_backends(install: TritonInstall, dest: Path) -> Path | None:
    """A backends directory whose python backend has the stub for this Python; None: use the server's own."""
    if install.python_stub is None:
        return install.backends
    dest.mkdir(parents=True, exist_ok=True)
    for backend in install.backends.iterdir() if install.backends else ():
        if backend.is_dir():
            shutil.copytree(backend, dest / backend.name, ignore=shutil.ignore_patterns("__pycache__"))
    python_dir = dest / "python"
    python_dir.mkdir(exist_ok=True)
    shutil.copy2(install.python_stub, python_dir / "triton_python_backend_stub")
    return dest


def server_environment(install: TritonInstall) -> dict[str, str]:
    """The server's environment: with nvidia-pytriton's stub, models' Python code imports this interpreter's packages
    (onnxruntime, numpy); a server installed some other way keeps its own Python set-up."""
    env = dict(os.environ)
    lib_dirs = [str(d) for d in install.library_dirs]
    if install.python_stub is not None:
        # The stub links against libpython3.X.so; prefer the running interpreter's over a system copy, so that
        # the stub's stdlib and compiled modules come from one Python build.
        libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
        if libdir and library and (Path(libdir) / library).exists():
            lib_dirs.insert(0, libdir)
        # The embedded interpreter finds its prefix by looking up `python3` on PATH: this interpreter's bin
        # directory first makes it pick up the virtual environment's pyvenv.cfg and site-packages.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env.pop("PYTHONHOME", None)
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    if lib_dirs:
        env["LD_LIBRARY_PATH"] = ":".join(lib_dirs)
    return env
