"""Image decoding: damaged JPEGs are errors naming the file (folder, LMDB, training pairs); good files decode to
exactly OpenCV's pixels."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lib.train.data.pairs import TrainingPairs
from lib.train.dataset import GOT10k
from lib.utils.image import decode_image, read_image
from lib.utils.lmdb_store import FolderStore, LmdbStore, pack_folder_to_lmdb
from tests.test_datasets_fixtures import make_got10k

OPENCV_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def textured(width: int, height: int) -> np.ndarray:
    """A BGR image with enough detail that its JPEG has a long entropy-coded scan."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), (xx + yy) * 7 % 256], axis=-1)
    return (image + (np.sin(xx / 3.0) * 40)[..., None]).clip(0, 255).astype(np.uint8)


def jpeg_bytes(width: int = 640, height: int = 480) -> bytes:
    ok, buf = cv2.imencode(".jpg", textured(width, height), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def damaged_middle(data: bytes) -> bytes:
    """32 zero bytes written over the middle of the file (inside the scan data)."""
    middle = len(data) // 2
    return data[:middle] + bytes(32) + data[middle + 32:]


def with_stray_marker(data: bytes) -> bytes:
    """A restart marker in the middle of a scan that has no restart interval."""
    middle = len(data) // 2
    return data[:middle] + b"\xff\xd0" + data[middle + 2:]


@pytest.mark.parametrize("damage", [damaged_middle, with_stray_marker])
def test_opencv_alone_decodes_the_damaged_jpeg_with_only_a_warning(damage, capfd):
    # The premise: OpenCV returns an image and libjpeg only prints to stderr (what the old decoder let through).
    image = cv2.imdecode(np.frombuffer(damage(jpeg_bytes()), np.uint8), OPENCV_FLAGS)
    assert image is not None and image.shape == (480, 640, 3)
    assert "Corrupt JPEG data" in capfd.readouterr().err


@pytest.mark.parametrize("damage", [damaged_middle, with_stray_marker])
def test_damaged_jpeg_is_an_error_naming_the_file(damage, tmp_path):
    path = tmp_path / "00000007.jpg"
    path.write_bytes(damage(jpeg_bytes()))
    with pytest.raises(ValueError, match=r"00000007\.jpg is a damaged JPEG \(libjpeg: Corrupt JPEG data"):
        read_image(path)


def test_damaged_jpeg_in_an_lmdb_is_an_error_naming_the_key(tmp_path):
    folder = tmp_path / "data"
    (folder / "seq").mkdir(parents=True)
    (folder / "seq" / "good.jpg").write_bytes(jpeg_bytes(64, 48))
    (folder / "seq" / "bad.jpg").write_bytes(damaged_middle(jpeg_bytes()))
    pack_folder_to_lmdb(str(folder), str(tmp_path / "lmdb"))
    store = LmdbStore(tmp_path / "lmdb")
    assert store.read_image("seq/good.jpg").shape == (48, 64, 3)
    with pytest.raises(ValueError, match=r"lmdb\[seq/bad\.jpg\] is a damaged JPEG"):
        store.read_image("seq/bad.jpg")


def test_good_jpeg_and_png_decode_to_opencvs_pixels(tmp_path, capfd):
    bgr = textured(97, 61)
    ok, png = cv2.imencode(".png", bgr)
    assert ok
    np.testing.assert_array_equal(decode_image(png.tobytes(), "x.png"), bgr[..., ::-1])  # PNG is lossless
    data = jpeg_bytes(97, 61)
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), OPENCV_FLAGS)[..., ::-1]
    np.testing.assert_array_equal(decode_image(data, "x.jpg"), expected)
    gray = cv2.imencode(".jpg", textured(33, 21)[..., 0])[1].tobytes()
    decoded = decode_image(gray, "gray.jpg")
    assert decoded.shape == (21, 33, 3)
    np.testing.assert_array_equal(decoded, cv2.imdecode(np.frombuffer(gray, np.uint8), OPENCV_FLAGS)[..., ::-1])
    assert capfd.readouterr().err == ""  # nothing captured from a good file is lost or printed


def test_stderr_still_works_after_decoding(tmp_path, capfd):
    (tmp_path / "bad.jpg").write_bytes(damaged_middle(jpeg_bytes()))
    with pytest.raises(ValueError):
        read_image(tmp_path / "bad.jpg")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def identity_processing(images, boxes, rng):
    return {"z_box": boxes[0]}


def test_training_counts_a_damaged_jpeg_as_an_unreadable_frame(tmp_path, caplog):
    make_got10k(str(tmp_path), frames=6)
    bad = tmp_path / "train" / "GOT-10k_Train_000001" / "00000002.jpg"
    bad.write_bytes(damaged_middle(jpeg_bytes(64, 48)))
    dataset = GOT10k(FolderStore(tmp_path), "g", "train")
    pairs = TrainingPairs([dataset], [1], 40, 100, identity_processing, seed=0, min_draws_for_failure_check=10**6)
    with caplog.at_level(logging.WARNING):
        items = [pairs[i] for i in range(40)]
    assert len(items) == 40 and pairs.read_failures > 0
    assert "GOT-10k_Train_000001/00000002.jpg" in caplog.text and "damaged JPEG" in caplog.text


def test_damaged_jpeg_is_detected_in_a_process_without_stderr(tmp_path):
    # A detached process may have file descriptor 2 closed; libjpeg's warning must still be caught (and fd 2 is
    # left closed, as it was).
    path = tmp_path / "bad.jpg"
    path.write_bytes(damaged_middle(jpeg_bytes()))
    script = (
        "import os, sys\n"
        "os.close(2)\n"
        "from lib.utils.image import read_image\n"
        "try:\n"
        f"    read_image({str(path)!r})\n"
        "except ValueError as exc:\n"
        "    print('detected' if 'damaged JPEG' in str(exc) else exc)\n"
        "try:\n"
        "    os.fstat(2)\n"
        "    print('fd2 open')\n"
        "except OSError:\n"
        "    print('fd2 closed')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["detected", "fd2", "closed"], run.stdout + run.stderr


class _StaticTracker:
    def initialize(self, image, box_xywh):
        self.box = box_xywh

    def track(self, image):
        return self.box, 1.0


def test_tracking_fails_the_sequence_naming_the_damaged_frame(tmp_path):
    from lib.test.evaluation.data import Sequence
    from lib.test.evaluation.running import run_sequence

    frames = []
    for i in range(3):
        path = tmp_path / "seq" / f"{i + 1:08d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(damaged_middle(jpeg_bytes()) if i == 2 else jpeg_bytes(64, 48))
        frames.append(str(path))
    seq = Sequence("seq", tuple(frames), "synthetic_a_test", np.array([[5.0, 5.0, 10.0, 10.0]] * 3))
    outcome = run_sequence(_StaticTracker(), seq, tmp_path / "results")
    assert outcome.error is not None and f"{frames[2]} is a damaged JPEG" in outcome.error
    assert not (tmp_path / "results" / "seq.txt").exists()
