from __future__ import annotations

import errno
import os
import shutil
import tempfile

import cv2
import numpy as np
import pytest
import torch

from lib.utils import io as io_module
from lib.utils.image import decode_image, read_image
from lib.utils.io import atomic_torch_save, atomic_write_bytes, atomic_write_text, remove_stale_temp_files


def test_atomic_writes_round_trip_and_leave_no_temp_files(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\r\n")
    assert path.read_bytes() == b"two\r\n"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "c.pth")
    assert torch.load(tmp_path / "c.pth")["w"].tolist() == [0, 1, 2]
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin", "c.pth"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.pth"
    atomic_torch_save({"epoch": 1}, path)
    with pytest.raises(Exception):
        atomic_torch_save({"bad": lambda: 0}, path)  # lambdas cannot be pickled
    assert torch.load(path) == {"epoch": 1} and os.listdir(tmp_path) == ["ckpt.pth"]
    with pytest.raises(FileNotFoundError, match="folder .*missing does not exist"):
        atomic_write_text(tmp_path / "missing" / "x.txt", "x")


class _FullDisk:
    """A file object that accepts `room` bytes and then fails as a full disk does (errno ENOSPC)."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def test_full_disk_names_the_file_and_the_free_space(tmp_path, monkeypatch):
    """torch.save on a full disk says only '[enforce fail at inline_container.cc:...] unexpected pos'."""
    path = tmp_path / "checkpoint_ep0002.pth"
    atomic_torch_save({"epoch": 1}, path)
    fdopen = os.fdopen
    monkeypatch.setattr(io_module.os, "fdopen", lambda fd, mode: _FullDisk(fdopen(fd, mode), room=100))
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10, 9, 3 * 2**20))
    with pytest.raises(OSError, match=rf"could not write {path}: the disk is full \(3 MiB free on the filesystem of "
                                      rf"{tmp_path}\)") as info:
        atomic_torch_save({"w": torch.zeros(1000)}, path)
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match="the disk is full"):  # a plain bytes write fails the same way
        atomic_write_bytes(path, bytes(1000))
    assert os.listdir(tmp_path) == [path.name] and torch.load(path) == {"epoch": 1}


def test_stale_temp_files_of_killed_writes_are_removed(tmp_path):
    keep = [".notes.tmp", "checkpoint_ep0001.pth", ".checkpoint_ep0001.pth.tmp", "x.abcdefgh.tmp"]
    stale = [".checkpoint_ep0002.pth.k3j_a9zq.tmp", ".demo_final.pth.0a1b2c3d.tmp"]
    for name in keep + stale:
        (tmp_path / name).write_bytes(b"x")
    fd, killed = tempfile.mkstemp(prefix=".checkpoint_ep0003.pth.", suffix=".tmp", dir=tmp_path)  # as io does
    os.close(fd)
    stale.append(os.path.basename(killed))
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted(keep)
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_read_image_is_rgb_and_errors_name_the_file(tmp_path):
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = read_image(tmp_path / "red.png")
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(FileNotFoundError, match="nothere.jpg does not exist"):
        read_image(tmp_path / "nothere.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ValueError, match="bad.jpg could not be decoded"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(ValueError, match="key/x.jpg is empty"):
        decode_image(b"", "key/x.jpg")


def test_exif_orientation_is_not_applied(tmp_path):
    """Boxes refer to the stored pixels: a JPEG tagged 'rotate 90' decodes as stored, as upstream
    trackit/miscellanies/image/io.py does; 80 wide."""
    from PIL import Image

    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :40] = (255, 255, 255)  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "tagged.jpg", quality=95, exif=exif.tobytes())
    assert cv2.imread(str(tmp_path / "tagged.jpg")).shape[:2] == (80, 40)  # what OpenCV's default would give
    image = read_image(tmp_path / "tagged.jpg")
    assert image.shape == (40, 80, 3)
    assert image[:, :30].mean() > 240 and image[:, 50:].mean() < 15
