"""Checkpoint archives are read with bounded memory: a zip bomb is refused before anything is inflated."""

from __future__ import annotations

import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from tests import models
from tests.conftest import REPO_ROOT, save_checkpoint
from tritongen.checkpoint import CheckpointKind, kind_of_checkpoint, load_checkpoint
from tritongen.errors import TritongenError
from tritongen.sources.archive import open_archive

INFLATED = 3 << 29  # 1.5 GiB


def zip_bomb(path: Path, member: str = "bomb/archive_format", inflated: int = INFLATED) -> Path:
    """A zip whose `member` inflates to `inflated` zero bytes from about 1.5 MB, written without inflating it here.

    One 64 MiB deflate block, flushed so that it depends on nothing before it, is repeated: a valid stream.
    """
    chunk = bytes(64 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    copies = inflated // len(chunk)
    data = block * copies + compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(copies):
        crc = zlib.crc32(chunk, crc)
    name = member.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), inflated, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), inflated,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.pt")


def test_the_bomb_is_what_it_claims(bomb):
    assert bomb.stat().st_size < 2_000_000
    with zipfile.ZipFile(bomb) as zf:
        (info,) = zf.infolist()
        assert info.file_size == INFLATED
        with zf.open(info) as f:  # a real deflate stream of zeros, not just a lying header
            assert f.read(1 << 20) == bytes(1 << 20)


def test_a_zip_bomb_is_refused_at_once_in_a_small_footprint(bomb):
    # In a fresh process whose peak memory is reset first (a child starts with its parent's peak: pytest's).
    code = ("import sys, time\n"
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            "from tritongen.checkpoint import load_checkpoint\n"
            "from tritongen.errors import TritongenError\n"
            "start = time.perf_counter()\n"
            "try:\n    load_checkpoint(sys.argv[1])\nexcept TritongenError as exc:\n    print('refused:', exc.message)\n"
            "print('seconds:', time.perf_counter() - start)\n"
            "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
            "print('peak_kb:', status['VmHWM'].split()[0])\n")
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=300,
                         cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    assert "zip bomb" in lines.get("refused", ""), out.stdout + out.stderr
    assert "inflates from 1.5 MiB to 1.5 GiB" in lines["refused"]
    assert float(lines["seconds"]) < 5  # 0.35 s here (40 s before the fix)
    # Refused before torch is imported: about 20 MB (3.4 GB peak before the fix, inflating the member whole).
    assert int(lines["peak_kb"]) < 300_000


def test_kind_detection_reads_a_bounded_prefix(tmp_path):
    # A large (but honestly stored) archive_format member is read 16 bytes at most, then told apart as usual.
    path = tmp_path / "big.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("m/archive_format", b"pt2" + b"x" * (8 << 20))
        zf.writestr("m/data.pkl", b"x")
    assert kind_of_checkpoint(path) is CheckpointKind.TORCH_SAVE


def test_a_compressed_real_checkpoint_still_loads(tmp_path):
    original = save_checkpoint(models.SmallCNN(), tmp_path / "m.pt")
    recompressed = tmp_path / "deflated.pt"
    with zipfile.ZipFile(original) as src, zipfile.ZipFile(recompressed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    loaded = load_checkpoint(recompressed, model_class="tests.models:SmallCNN")
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded.module(x), load_checkpoint(original, model_class="tests.models:SmallCNN").module(x))


def test_duplicate_member_names_are_refused(tmp_path):
    path = tmp_path / "twice.pt"
    with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("m/data.pkl", b"a")
        zf.writestr("m/data.pkl", b"b")
    with pytest.raises(TritongenError, match="twice"), open_archive(path):
        pass
