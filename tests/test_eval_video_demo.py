"""tracking/video_demo.py on a generated video file and an image folder, run as a user would: its main() in this
process (the `run_cli` fixture), and in a real process for the CUDA test (CUDA_VISIBLE_DEVICES only takes effect in
a fresh interpreter)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

import pytest
from script_helpers import tracking_script
from test_eval_helpers import write_frame

ROOT = Path(__file__).resolve().parents[1]


def _run_process(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tracking/video_demo.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def test_video_file_and_image_folder(tmp_path, run_cli):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), 20 * i, dtype=np.uint8))
    writer.release()
    out = tmp_path / "out"
    result = run_cli("video_demo", "static", "none", str(video), "--init_box", "5", "6", "20", "10.5", "--out",
                     str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "clip_static_none.txt").read_text() == "5.0000,6.0000,20.0000,10.5000\n" * 6
    capture = cv2.VideoCapture(str(out / "clip_static_none.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 64
    ok, first = capture.read()
    capture.release()
    times = [float(v) for v in (out / "clip_static_none_time.txt").read_text().splitlines()]
    assert len(times) == 6 and all(t > 0 for t in times)
    # The input's first frame is black: the text lines (red) show up in the video; the second one (frame rate) sits
    # below y=18, where the first line's letters end.
    assert ok and (first[20:34, 5:60, 2] > 100).sum() > 20 and (first[20:34, 5:60, :2] < 80).all()

    for i in (1, 2, 10):
        write_frame(tmp_path / "frames" / f"{i}.jpg", 40, 30, value=30 * i)
    result = run_cli("video_demo", "static", "none", str(tmp_path / "frames"), "--init_box", "1", "2", "3", "4",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len((out / "frames_static_none.txt").read_text().splitlines()) == 3
    assert not list(out.glob(".*partial*"))


def test_no_box_without_display_is_a_clear_error(tmp_path, run_cli, monkeypatch):
    write_frame(tmp_path / "frames" / "1.jpg")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = run_cli("video_demo", "static", "none", str(tmp_path / "frames"), "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and "--init_box" in result.stderr and "no display" in result.stderr


def test_initial_box_outside_the_frame_is_a_clear_error(tmp_path, run_cli):
    write_frame(tmp_path / "frames" / "1.jpg", 40, 30)
    write_frame(tmp_path / "frames" / "2.jpg", 40, 30)
    out = tmp_path / "out"
    result = run_cli("video_demo", "static", "none", str(tmp_path / "frames"), "--init_box", "50", "5", "10", "10",
                     "--out", str(out))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "initial box [50.0, 5.0, 10.0, 10.0] (x, y, w, h) lies outside the 40x30 image" in result.stderr
    assert not (out / "frames_static_none.txt").exists()


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    write_frame(tmp_path / "frames" / "1.jpg")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU visible, whatever this machine has
    result = _run_process("static", "none", str(tmp_path / "frames"), "--init_box", "1", "2", "3", "4", "--device",
                          "cuda", "--out", str(tmp_path / "out"), env=env)
    assert result.returncode != 0 and "--device cpu" in result.stderr and "Traceback" not in result.stderr


def test_engine_flag_reaches_the_tracker(tmp_path, run_cli):
    write_frame(tmp_path / "frames" / "1.jpg", 64, 48)
    result = run_cli("video_demo", "lorat", "demo", str(tmp_path / "frames"), "--checkpoint", "random", "--init_box",
                     "1", "2", "9", "9", "--engine", "tensorrt", "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "engine 'tensorrt' needs an NVIDIA GPU" in result.stderr


def test_overlay_draws_score_and_frame_rate():
    demo = tracking_script("video_demo")
    assert demo.overlay_lines(3, 0.5, 12.345) == ("#3 score 0.50", "12.3 fps")
    assert demo.running_fps([0.1, 0.3]) == pytest.approx(5.0)
    image = np.full((60, 140, 3), 50, dtype=np.uint8)
    box = np.array([40.0, 40.0, 20.0, 15.0])  # below the text
    one, two = demo.annotate(image, box, ("#3 score 0.50",)), demo.annotate(image, box, ("#3 score 0.50", "12.3 fps"))
    assert (one[40, 40:61] == (0, 255, 0)).all() and (two[48, 40] == (0, 255, 0)).all()  # box edges, BGR green
    changed = np.argwhere((one != two).any(axis=2))
    assert len(changed) > 20 and changed[:, 0].min() >= 19 and changed[:, 0].max() <= 36  # only the second line
    text = two[changed[:, 0], changed[:, 1]].astype(int)  # red text (anti-aliased into the grey background)
    assert (text[:, 2] > text[:, 0]).all() and (text[:, 0] == text[:, 1]).all() and (text[:, 2] > 240).sum() > 10


class FakeCamera:
    """Stands in for cv2.VideoCapture(index): camera 0 serves `frames` grey frames of 64x48, others do not open."""

    frames = 10
    opened: list = []

    def __init__(self, index):
        self.index, self.served = index, 0
        FakeCamera.opened.append(index)

    def isOpened(self):
        return self.index == 0

    def get(self, prop):
        return 0.0  # a camera that reports no frame rate

    def read(self):
        if self.served == self.frames:
            return False, None
        self.served += 1
        return True, np.full((48, 64, 3), 10 * self.served, dtype=np.uint8)

    def release(self):
        pass


def test_camera_source(tmp_path, run_cli, monkeypatch):
    real_capture = cv2.VideoCapture
    FakeCamera.opened = []
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    out = tmp_path / "out"
    args = ("--init_box", "5", "6", "20", "10", "--out", str(out))
    result = run_cli("video_demo", "static", "none", "0", "--max_frames", "4", *args)
    assert result.returncode == 0, result.stderr
    assert FakeCamera.opened == [0]  # the integer index, not the string "0"
    assert (out / "camera0_static_none.txt").read_text() == "5.0000,6.0000,20.0000,10.0000\n" * 4
    assert len((out / "camera0_static_none_time.txt").read_text().splitlines()) == 4

    monkeypatch.setattr(FakeCamera, "frames", 3)  # the stream ends before --max_frames
    assert run_cli("video_demo", "static", "none", "0", "--max_frames", "50", *args).returncode == 0
    assert len((out / "camera0_static_none.txt").read_text().splitlines()) == 3

    result = run_cli("video_demo", "static", "none", "3", *args)
    assert result.returncode != 0 and "cannot open camera 3" in result.stderr and "Traceback" not in result.stderr

    monkeypatch.setattr(cv2, "VideoCapture", real_capture)
    capture = cv2.VideoCapture(str(out / "camera0_static_none.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0) and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()


def test_source_parsing(tmp_path, monkeypatch):
    demo = tracking_script("video_demo")
    monkeypatch.chdir(tmp_path)
    assert demo.parse_source("0") == 0 and demo.parse_source("12") == 12
    (tmp_path / "0").mkdir()  # an existing folder named like an index is a folder
    assert demo.parse_source("0") == Path("0") and demo.parse_source("clip.mp4") == Path("clip.mp4")


def test_show_without_gui_is_a_clear_error(tmp_path, run_cli, monkeypatch):
    write_frame(tmp_path / "frames" / "1.jpg")
    args = ("static", "none", str(tmp_path / "frames"), "--init_box", "1", "2", "3", "4", "--show", "--out",
            str(tmp_path / "out"))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = run_cli("video_demo", *args)
    assert result.returncode != 0 and "--show needs a display" in result.stderr

    def no_gui(*_args):
        raise cv2.error("The function is not implemented. Rebuild the library with GTK+ support")

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    result = run_cli("video_demo", *args)
    assert result.returncode != 0 and "no GUI support" in result.stderr and "opencv-python" in result.stderr
    assert not (tmp_path / "out").exists()
