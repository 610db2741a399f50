"""Checkpoint archives (the zip files torch.save, torch.jit.save and torch.export.save write), read with bounded memory.

Every member's declared size is checked before anything is read, and members are read in bounded prefixes, so a
small file that inflates to gigabytes (a zip bomb) is refused at once instead of filling memory.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tritongen.errors import TritongenError

# torch writes its archives uncompressed; a compressed member may inflate freely up to this size, and beyond it only
# by a ratio real weights never reach (deflate gains a few percent on float tensors).
FREE_INFLATE_BYTES = 64 << 20
MAX_INFLATE_RATIO = 50
# The largest metadata member (a program's JSON, a weights config) read whole.
MAX_METADATA_BYTES = 512 << 20


@dataclass(frozen=True)
class Archive:
    """An open checkpoint archive: its members by name and the folder torch's reader prefixes every record with."""

    path: Path
    zip: zipfile.ZipFile
    root: str  # "model" for "model/data.pkl"; torch reads records as "<root>/<name>"

    @property
    def names(self) -> list[str]:
        return self.zip.namelist()

    def record(self, name: str) -> str:
        """The member name of a record as torch's reader looks it up."""
        return f"{self.root}/{name}" if self.root else name

    def has(self, name: str) -> bool:
        return self.record(name) in self.zip.NameToInfo

    def records(self, prefix: str = "") -> list[str]:
        """Record names (without the root folder) that start with `prefix`."""
        lead = self.record(prefix)
        cut = len(self.root) + 1 if self.root else 0
        return [n[cut:] for n in self.names if n.startswith(lead) and not n.endswith("/")]

    def size(self, name: str) -> int:
        return self.zip.getinfo(self.record(name)).file_size

    def read_prefix(self, name: str, limit: int) -> bytes:
        """At most `limit` bytes from the start of a record."""
        with self.zip.open(self.record(name)) as f:
            return f.read(limit)

    def read(self, name: str, limit: int = MAX_METADATA_BYTES) -> bytes:
        """A whole record, refused when it declares more than `limit` bytes."""
        size = self.size(name)
        if size > limit:
            raise TritongenError(f"'{self.path}' has a member '{name}' of {size / 2**20:.0f} MiB, more than a "
                                 f"checkpoint's metadata ever holds ({limit / 2**20:.0f} MiB)",
                                 "pass a file written by torch.save, torch.jit.save or torch.export.save")
        return self.read_prefix(name, size)


@contextmanager
def open_archive(path: Path) -> Iterator[Archive]:
    """Open a checkpoint archive after checking that no member inflates beyond what torch could have written."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise TritongenError(f"'{path}' is not a readable zip archive ({exc})",
                             "pass a file written by torch.save, torch.jit.save or torch.export.save") from exc
    with zf:
        check_declared_sizes(path, zf.infolist())
        names = zf.namelist()
        if len(set(names)) != len(names):
            duplicate = next(n for n in names if names.count(n) > 1)
            raise TritongenError(f"'{path}' holds the member '{duplicate}' twice, which torch never writes (two "
                                 "readers could see different files)", "pass the checkpoint as torch saved it")
        first = names[0] if names else ""
        yield Archive(Path(path), zf, first.split("/", 1)[0] if "/" in first else "")


def check_declared_sizes(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse a member that declares an inflated size no real checkpoint has (without inflating anything)."""
    for info in members:
        packed = max(info.compress_size, 1)
        if info.file_size > FREE_INFLATE_BYTES and info.file_size > MAX_INFLATE_RATIO * packed:
            raise TritongenError(
                f"'{path}' is not a checkpoint torch wrote: its member '{info.filename}' inflates from "
                f"{_size(info.compress_size)} to {_size(info.file_size)} (a zip bomb?)",
                "pass the file torch.save, torch.jit.save or torch.export.save wrote, not a re-compressed copy")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
