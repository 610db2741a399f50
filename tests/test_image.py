"""The slim image's helpers that need no engine, and the errors when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritongen.errors import TritongenError
from tritongen.image import BaseImageInfo, _requirements, build_slim_image, download_wheels


def test_pip_platforms_cover_every_manylinux_the_glibc_runs() -> None:
    base = BaseImageInfo("b", "3.11", (2, 36), "x86_64")
    platforms = base.pip_platforms()
    # pytriton ships manylinux_2_35, onnxruntime manylinux_2_28, numpy manylinux2014 (= 2_17).
    for tag in ("manylinux_2_36_x86_64", "manylinux_2_35_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"):
        assert tag in platforms
    assert "manylinux_2_37_x86_64" not in platforms


def test_requirements_ignore_comments_and_blank_lines() -> None:
    assert _requirements("# pins\n\nonnxruntime==1.32.0  # why\nnumpy<2\n") == ["onnxruntime==1.32.0", "numpy<2"]


def test_cached_wheels_are_used_without_pip(tmp_path: Path) -> None:
    base = BaseImageInfo("b", "3.11", (2, 36), "x86_64")
    # A first call would run pip; fake a completed download where the cache key points.
    import hashlib
    import json

    key = hashlib.sha256(json.dumps([["a==1"], [], "3.11", base.pip_platforms()]).encode()).hexdigest()[:16]
    target = tmp_path / f"py3.11-x86_64-{key}"
    target.mkdir()
    (target / "a-1-py3-none-any.whl").write_text("")
    (target / ".complete").write_text("a-1-py3-none-any.whl\n")
    lines: list[str] = []
    wheels = download_wheels(["a==1"], [], base, cache_dir=tmp_path, progress=lines.append)
    assert wheels == [target / "a-1-py3-none-any.whl"]
    assert "cached" in lines[-1]


def test_no_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(TritongenError, match="no Docker engine answers") as caught:
        build_slim_image(base_image="x")
    assert "dockerd" in (caught.value.hint or "")


def test_launch_docker_without_engine_points_at_the_embedded_server(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from tritongen.server.docker import launch_docker

    model = tmp_path / "repo" / "m"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "m"\nbackend: "python"\nmax_batch_size: 0\n')
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(TritongenError, match="no Docker engine answers") as caught:
        with launch_docker(tmp_path / "repo"):
            pass
    assert "--server embedded" in (caught.value.hint or "")


def test_build_from_a_folder_without_a_dockerfile(tmp_path: Path) -> None:
    from tritongen.image import _build_files

    with pytest.raises(TritongenError, match="has no Dockerfile"):
        _build_files(tmp_path)
