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
    capture.release()

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
