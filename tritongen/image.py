"""The slim CPU Triton image: wheels downloaded on the host, then `docker build` of the generated Dockerfile.

Wheels are fetched by pip on the host, for the base image's Python and platform, because pip inside
`docker build` may not reach (or may not be able to verify) PyPI; the Dockerfile installs them with
`--no-index`. Downloads are cached under ~/.cache/tritongen/wheels, keyed by what they are for.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tritongen.errors import TritongenError

if TYPE_CHECKING:
    import docker

Progress = Callable[[str], None]

# What the Dockerfile COPYs from the build context, besides wheels/.
BUILD_FILES = ("Dockerfile", "requirements.txt", "requirements-server.txt")
_PROBE = (
    "import json, platform, sys; "
    "print(json.dumps({'python': '%d.%d' % sys.version_info[:2], "
    "'libc': platform.libc_ver(), 'machine': platform.machine()}))"
)


@dataclass(frozen=True)
class BaseImageInfo:
    """What the wheels must match: the base image's Python, C library and CPU architecture."""

    image: str
    python_version: str  # "3.11"
    glibc: tuple[int, int]  # (2, 36)
    machine: str  # "x86_64" or "aarch64"

    def pip_platforms(self) -> list[str]:
        # pip does not expand manylinux_2_X to the older manylinux tags a glibc also runs: list them all.
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
        return tags + [f"manylinux2014_{self.machine}", f"manylinux2010_{self.machine}", f"manylinux1_{self.machine}"]


@dataclass(frozen=True)
class SlimImage:
    """What `build_slim_image` built."""

    tag: str
    image_id: str
    size_bytes: int
    base: BaseImageInfo
    wheels: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": True,
            "tag": self.tag,
            "image_id": self.image_id,
            "size_bytes": self.size_bytes,
            "size_mb": round(self.size_bytes / 1e6, 1),
            "base_image": self.base.image,
            "python_version": self.base.python_version,
            "platform": self.base.machine,
            "wheels": list(self.wheels),
            "seconds": round(self.seconds, 1),
        }


def build_slim_image(
    *,
    base_image: str | None = None,
    tag: str | None = None,
    deploy_dir: Path | None = None,
    python_version: str | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    client: docker.DockerClient | None = None,
) -> SlimImage:
    """Build the slim Triton image and return what was built.

    `deploy_dir`: build from the Dockerfile and requirements files of a generated deploy folder (your edits
    included); None renders them fresh. `base_image` defaults to the Dockerfile's (python:3.11-slim).
    """
    from tritongen.deploy import DEFAULT_BASE_IMAGE, SLIM_IMAGE, image_files
    from tritongen.server.docker import docker_client

    say = progress or (lambda _line: None)
    started = time.perf_counter()
    base_image = base_image or DEFAULT_BASE_IMAGE
    tag = tag or SLIM_IMAGE
    files = _build_files(deploy_dir) if deploy_dir is not None else image_files()
    client = client or docker_client()

    _ensure_base_image(client, base_image, say)
    base = probe_base_image(client, base_image)
    if python_version is not None and python_version != base.python_version:
        raise TritongenError(
            f"--python-version {python_version} does not match the Python in {base_image} ({base.python_version})",
            "leave --python-version out: it is read from the base image",
        )
    say(f"base image {base_image}: Python {base.python_version}, glibc {base.glibc[0]}.{base.glibc[1]}, {base.machine}")

    wheels = download_wheels(
        _requirements(files["requirements-server.txt"]),
        _requirements(files["requirements.txt"]),
        base,
        cache_dir=cache_dir,
        progress=say,
    )
    with tempfile.TemporaryDirectory(prefix="tritongen-image-") as tmp:
        context = Path(tmp)
        for name, text in files.items():
            (context / name).write_text(text)
        (context / "wheels").mkdir()
        for wheel in wheels:
            _link_or_copy(wheel, context / "wheels" / wheel.name)
        image_id = _docker_build(client, context, tag, base_image, say)

    size = int(client.images.get(image_id).attrs.get("Size", 0))
    return SlimImage(tag, image_id, size, base, tuple(w.name for w in wheels), time.perf_counter() - started)


PROBE_TIMEOUT_S = 120.0


def probe_base_image(client: docker.DockerClient, image: str) -> BaseImageInfo:
    """Run the base image's python3 once to read its version, C library and architecture.

    The probe container is removed on every path (an image without python3, a failed probe, Ctrl-C).
    """
    import docker

    from tritongen.server.docker import LABEL, removed_after

    name = f"tritongen-probe-{uuid.uuid4().hex[:12]}"
    no_python = TritongenError(
        f"base image {image} has no python3 on its PATH",
        "use a base image with python3, such as python:3.11-slim or Debian with python3 and python3-venv")
    with removed_after(client, name) as slot:
        try:
            container = client.containers.create(
                image, ["python3", "-c", _PROBE], name=name, entrypoint=[], network_disabled=True,
                labels={LABEL: "1", f"{LABEL}.purpose": "probe"})
            slot.created(container)
            container.start()
        except docker.errors.APIError as exc:
            # The engine checks the command only when it starts the container: "executable file not found".
            if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
                raise no_python from exc
            raise TritongenError(f"cannot run base image {image}: {_short(exc)}",
                                 "check that the Docker engine can run containers from it") from exc
        try:
            status = container.wait(timeout=PROBE_TIMEOUT_S)
        except Exception as exc:  # requests' ReadTimeout and the engine's errors alike
            raise TritongenError(f"the python3 probe of base image {image} did not finish ({_short(exc)})",
                                 "check that the image starts: docker run --rm IMAGE python3 -V") from exc
        out = container.logs(stdout=True, stderr=False)
        if int(status.get("StatusCode", 1)) != 0:
            err = container.logs(stdout=False, stderr=True).decode(errors="replace").strip()
            missing = int(status.get("StatusCode", 1)) == 127 or "not found" in err
            if missing:
                raise no_python
            raise TritongenError(
                f"base image {image} cannot run python3 (exit code {status.get('StatusCode')}: "
                f"{(err.splitlines() or ['no output'])[-1]})",
                "use a base image with python3 on PATH, such as python:3.11-slim or Debian with python3 and python3-venv")
    info = json.loads(out.decode().strip().splitlines()[-1])
    libc_name, libc_version = info["libc"]
    if libc_name != "glibc":
        raise TritongenError(
            f"base image {image} has no glibc (found {libc_name or 'none'}); the Triton binaries need glibc >= 2.35",
            "use a Debian or Ubuntu based image, such as python:3.11-slim",
        )
    major, minor = (int(x) for x in libc_version.split(".")[:2])
    return BaseImageInfo(image, info["python"], (major, minor), info["machine"])


def download_wheels(
    server: list[str],
    runtime: list[str],
    base: BaseImageInfo,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Download (or find in the cache) the wheels for `server` (without dependencies) and `runtime` (with them)."""
    say = progress or (lambda _line: None)
    key_source = json.dumps([server, runtime, base.python_version, base.pip_platforms()])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    target = (cache_dir or wheel_cache_dir()) / f"py{base.python_version}-{base.machine}-{key}"
    done = target / ".complete"
    if done.is_file():
        names = done.read_text().split()
        wheels = [target / n for n in names]
        if all(w.is_file() for w in wheels):
            say(f"wheels: {len(wheels)} cached in {target}")
            return wheels
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=_mkdir(target.parent)))
    try:
        _pip_download(server, base, partial, no_deps=True, say=say)
        _pip_download(runtime, base, partial, no_deps=False, say=say)
        names = sorted(p.name for p in partial.glob("*.whl"))
        (partial / ".complete").write_text("\n".join(names) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)  # atomic: a half-finished download is never taken for a cached one
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    say(f"wheels: {len(names)} downloaded into {target}")
    return [target / n for n in names]


def wheel_cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "tritongen" / "wheels"


def _pip_download(requirements: list[str], base: BaseImageInfo, dest: Path, *, no_deps: bool, say: Progress) -> None:
    if not requirements:
        return
    abi = "cp" + base.python_version.replace(".", "")
    cmd = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--progress-bar", "off",
        "--only-binary=:all:", "--dest", str(dest),
        "--python-version", base.python_version, "--implementation", "cp",
        "--abi", abi, "--abi", "abi3", "--abi", "none",
    ]  # fmt: skip
    for platform in base.pip_platforms():
        cmd += ["--platform", platform]
    if no_deps:
        cmd.append("--no-deps")
    cmd += requirements
    say(f"pip download {' '.join(requirements)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        if line.startswith(("Collecting", "Saved", "Downloading", "File was already")):
            say(line.strip())
    if proc.wait() != 0:
        raise TritongenError(
            f"pip could not download wheels for Python {base.python_version} on {base.machine}: "
            + " ".join(requirements),
            "check the network connection to PyPI (or your pip index settings); pip's output is below",
            details="\n".join(lines[-30:]),
        )


def _ensure_base_image(client: docker.DockerClient, image: str, say: Progress) -> None:
    import docker

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    say(f"pulling base image {image}")
    try:
        client.images.pull(image)
    except docker.errors.APIError as exc:
        raise TritongenError(
            f"base image {image} is not on this machine and could not be pulled ({_short(exc)})",
            "pull it yourself, or pass --base-image with an image that is on this machine",
        ) from exc


def _docker_build(client: docker.DockerClient, context: Path, tag: str, base_image: str, say: Progress) -> str:
    import docker

    image_id: str | None = None
    log: list[str] = []
    try:
        # The low-level API streams the build log as it happens (the high-level one returns it at the end).
        stream = client.api.build(
            path=str(context),
            tag=tag,
            buildargs={"BASE_IMAGE": base_image},
            rm=True,
            forcerm=True,
            pull=False,  # the base image was checked above; it may exist only on this machine
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise TritongenError(
                    f"docker build of {tag} failed: {chunk['error'].strip()}",
                    "the build log is below",
                    details="\n".join(log[-40:]),
                )
            text = chunk.get("stream", "")
            for line in text.splitlines():
                if line.strip():
                    log.append(line)
                    say(line)
            aux = chunk.get("aux") or {}
            image_id = aux.get("ID", image_id)
    except docker.errors.APIError as exc:
        raise TritongenError(f"docker build of {tag} failed: {_short(exc)}", "the build log is below",
                             details="\n".join(log[-40:])) from exc  # fmt: skip
    if image_id is None:  # older engines report the ID only in the log
        image_id = client.images.get(tag).id
    return image_id


def _build_files(deploy_dir: Path) -> dict[str, str]:
    missing = [name for name in BUILD_FILES if not (deploy_dir / name).is_file()]
    if missing:
        raise TritongenError(
            f"{deploy_dir} has no {', '.join(missing)}",
            "pass the deploy folder that `tritongen build` wrote, or leave --deploy out to use tritongen's Dockerfile",
        )
    return {name: (deploy_dir / name).read_text() for name in BUILD_FILES}


def _requirements(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # the wheels are ~100 MB: a hard link costs nothing
    except OSError:
        shutil.copy2(src, dst)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
