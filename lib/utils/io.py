"""Atomic file writes: a reader never sees a half-written result, checkpoint or settings file.

Each writer puts the data into a temporary file in the destination's own folder (so the final
`os.replace` is a same-filesystem rename), flushes and fsyncs it, then renames it over the target.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, BinaryIO, Callable


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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
