"""File stores: one read interface over a dataset folder or an LMDB holding the same files.

Dataset classes read their native files through a store, so the same parsing code serves both layouts.
An LMDB built by `pack_folder_to_lmdb` holds every file of the dataset folder under its path relative to
that folder ('/'-separated), e.g. `airplane/airplane-1/img/00000001.jpg`.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from typing import Callable, Iterator

import lmdb
import numpy as np
from PIL import Image

from lib.utils.image import decode_image


class Store:
    """Read-only access to the files of one dataset root, addressed by '/'-separated relative paths."""

    def read_bytes(self, relpath: str) -> bytes:
        raise NotImplementedError

    def exists(self, relpath: str) -> bool:
        raise NotImplementedError

    def list(self, relprefix: str) -> list[str]:
        """Sorted names of the files and folders directly inside folder `relprefix`."""
        raise NotImplementedError

    def describe(self, relpath: str) -> str:
        """Human-readable location of `relpath`, for error messages."""
        raise NotImplementedError

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Scope for many reads in a row (keeps an LMDB open); a no-op for folders."""
        yield

    def read_text(self, relpath: str) -> str:
        data = self.read_bytes(relpath)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.describe(relpath)} is not UTF-8 text ({exc}); re-extract that file") from exc

    def read_image(self, relpath: str) -> np.ndarray:
        """RGB uint8 HxWx3 image; corrupt data raises an error naming the file."""
        return decode_image(self.read_bytes(relpath), self.describe(relpath))

    def image_size(self, relpath: str) -> tuple[int, int]:
        """(width, height) from the image header only (no full decode)."""
        try:
            with Image.open(io.BytesIO(self.read_bytes(relpath))) as image:
                return image.size
        except (OSError, ValueError) as exc:  # PIL raises UnidentifiedImageError (an OSError) on bad data
            raise ValueError(f"image {self.describe(relpath)} is unreadable ({exc}); re-extract that file") from exc


class FolderStore(Store):
    """Files under a folder on disk."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"dataset folder {self.root} does not exist; check your local.py paths")

    def _path(self, relpath: str) -> str:
        return os.path.join(self.root, *relpath.split("/")) if relpath else self.root

    def describe(self, relpath: str) -> str:
        return self._path(relpath)

    def read_bytes(self, relpath: str) -> bytes:
        path = self._path(relpath)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} does not exist (dataset incomplete or wrong path in local.py)") from None

    def exists(self, relpath: str) -> bool:
        return os.path.exists(self._path(relpath))

    def list(self, relprefix: str) -> list[str]:
        path = self._path(relprefix)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"folder {path} does not exist (dataset incomplete or wrong path in local.py)")
        return sorted(os.listdir(path))


class LmdbStore(Store):
    """Files packed into an LMDB by `pack_folder_to_lmdb`.

    py-lmdb allows one open handle per LMDB per process and handles must not cross a fork (DataLoader
    workers), so the store holds no handle by default: each read opens the LMDB read-only (~0.2 ms), and
    bulk work (parsing all annotations) runs inside `with store.session():`, which keeps one handle open.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        if not os.path.isdir(self.path) or not os.path.isfile(os.path.join(self.path, "data.mdb")):
            raise FileNotFoundError(
                f"LMDB {self.path} does not exist or is not an LMDB folder; build it with "
                "python tracking/build_lmdb.py (--dataset NAME, --custom NAME, or --root DIR --out LMDB)"
            )
        self._env: lmdb.Environment | None = None

    def _open(self) -> lmdb.Environment:
        return lmdb.open(self.path, readonly=True, lock=False, readahead=False, meminit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        if self._env is not None:  # nested: the outer session owns the handle
            yield
            return
        self._env = self._open()
        try:
            yield
        finally:
            self._env.close()
            self._env = None

    @contextlib.contextmanager
    def _txn(self) -> Iterator[lmdb.Transaction]:
        with self.session():
            with self._env.begin(buffers=False) as txn:
                yield txn

    def describe(self, relpath: str) -> str:
        return f"{self.path}[{relpath}]"

    def read_bytes(self, relpath: str) -> bytes:
        with self._txn() as txn:
            data = txn.get(relpath.encode("utf-8"))
        if data is None:
            raise FileNotFoundError(
                f"{self.describe(relpath)}: key not found in the LMDB (incomplete pack? rebuild it with "
                "tracking/build_lmdb.py)"
            )
        return data

    def exists(self, relpath: str) -> bool:
        with self._txn() as txn:
            if txn.get(relpath.encode("utf-8")) is not None:
                return True
            return next(self._keys_under(txn, relpath), None) is not None

    @staticmethod
    def _keys_under(txn: lmdb.Transaction, relprefix: str) -> Iterator[str]:
        prefix = (relprefix.rstrip("/") + "/").encode("utf-8") if relprefix else b""
        cursor = txn.cursor()
        if not cursor.set_range(prefix):
            return
        for key in cursor.iternext(keys=True, values=False):
            if not key.startswith(prefix):
                return
            yield key.decode("utf-8")

    def list(self, relprefix: str) -> list[str]:
        prefix = (relprefix.rstrip("/") + "/") if relprefix else ""
        names: list[str] = []
        with self._txn() as txn:
            cursor = txn.cursor()
            found = cursor.set_range(prefix.encode("utf-8"))
            while found:
                key = cursor.key().decode("utf-8")
                if not key.startswith(prefix):
                    break
                name, slash, _ = key[len(prefix):].partition("/")
                names.append(name)
                # Skip the rest of a sub-folder: '0' is the character right after '/'.
                found = cursor.set_range((prefix + name + "0").encode("utf-8")) if slash else cursor.next()
        if not names and not self.exists(relprefix):
            raise FileNotFoundError(f"{self.describe(relprefix)}: no such folder in the LMDB")
        return sorted(set(names))


def open_store(path: str, use_lmdb: bool) -> Store:
    """A FolderStore or an LmdbStore for `path`."""
    return LmdbStore(path) if use_lmdb else FolderStore(path)


def iter_files(root: str) -> Iterator[str]:
    """Relative '/'-separated paths of every file under `root`, in sorted order."""
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        rel = os.path.relpath(folder, root)
        for name in sorted(files):
            yield name if rel == "." else "/".join(rel.split(os.sep) + [name])


def pack_folder_to_lmdb(
    root: str,
    out_dir: str,
    batch_bytes: int = 256 << 20,
    initial_map_size: int = 1 << 30,
    progress: Callable[[int, str], None] | None = None,
) -> int:
    """Pack every file under `root` into a new LMDB at `out_dir`; returns the number of files.

    Built in `out_dir + '.tmp'` and renamed at the end, so a crash never leaves a half-built LMDB that
    looks complete. The map size doubles whenever it is full; writes are committed in batches.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset folder {root} does not exist; check the path in your local.py")
    if os.path.exists(out_dir):
        raise FileExistsError(f"{out_dir} already exists; delete it first if you want to rebuild it")
    tmp = out_dir.rstrip("/\\") + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    env = lmdb.open(tmp, map_size=initial_map_size, subdir=True, meminit=False)
    count = 0
    batch: list[tuple[bytes, bytes]] = []
    size = 0

    def commit() -> None:
        while True:
            try:
                with env.begin(write=True) as txn:
                    for key, value in batch:
                        txn.put(key, value)
                return
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)

    try:
        for relpath in iter_files(root):
            with open(os.path.join(root, relpath), "rb") as f:
                data = f.read()
            batch.append((relpath.encode("utf-8"), data))
            size += len(data)
            count += 1
            if size >= batch_bytes:
                commit()
                batch, size = [], 0
                if progress is not None:
                    progress(count, relpath)
        commit()
        env.sync()
    finally:
        env.close()
    os.replace(tmp, out_dir)
    return count
