"""Atomic file writes: a reader never sees a half-written result, checkpoint or settings file.

Each writer puts the data into a temporary file `.<name>.<8 random characters>.tmp` in the destination's own
folder (so the final `os.replace` is a same-filesystem rename), flushes and fsyncs it, then renames it over the
target. A failed write removes its temporary file and raises an `OSError` that names the target, says whether the
disk was full and how much space is left; the previous file (if any) is untouched. Only a killed process leaves a
temporary file behind: `remove_stale_temp_files` clears them when a run starts again.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

# tempfile.mkstemp's random part: 8 characters of [a-z0-9_]
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _os_error_in_chain(exc: BaseException) -> OSError | None:
    """The OSError behind `exc` (torch.save wraps a failed file write in a RuntimeError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _write_error(path: str, folder: str, exc: BaseException) -> OSError | None:
    """A clear error for a failed write of `path`, or None when `exc` is not an I/O failure (e.g. pickling)."""
    cause = _os_error_in_chain(exc)
    torch_writer_failed = isinstance(exc, RuntimeError) and "inline_container" in str(exc)
    if cause is None and not torch_writer_failed:
        return None
    free = shutil.disk_usage(folder).free / 2**20
    code = cause.errno if cause is not None and cause.errno else errno.EIO
    if code == errno.ENOSPC:
        what = f"the disk is full ({free:.0f} MiB free on the filesystem of {folder})"
        fix = "free some space or write somewhere else (e.g. another --save_dir)"
    else:
        what = f"{type(cause or exc).__name__}: {cause or exc}; {free:.0f} MiB free on the filesystem of {folder}"
        fix = "check the folder's permissions and the disk"
    return OSError(code, f"could not write {path}: {what}. The previous file, if any, is unchanged; {fix}.")


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Run `write(fileobj)` on a temp file next to `path`, then atomically move it into place."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist (create it first)")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        error = _write_error(path, folder, exc) if isinstance(exc, Exception) else None
        if error is not None:
            raise error from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (no newline translation: what you pass is what lands)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save(obj, path)` atomically, so an interrupted save never leaves a truncated checkpoint."""
    import torch  # imported here so that text-only users (e.g. the local.py generator) start fast

    _atomic_write(path, lambda f: torch.save(obj, f))


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed atomic writes left in `folder`; return what was removed.

    Only names of this module's pattern (`.<name>.<8 random characters>.tmp`) are touched. Call it when no other
    process writes into `folder` (e.g. at the start of a training run, before its first save).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if _TEMP_NAME.match(p.name) and p.is_file())
    for p in stale:
        p.unlink()
    return stale
