"""Track one object through a video file, an image folder or a camera; write an annotated video and a box file.

    python tracking/video_demo.py lorat base_224 clip.mp4 --init_box 100 120 40 60 --checkpoint ckpt.pth
    python tracking/video_demo.py opencv_mil default frames_dir/ --init_box 10 10 30 30 --out output/demo
    python tracking/video_demo.py lorat base_224 0 --checkpoint ckpt.pth --show     # camera 0, box drawn by mouse

A source that is an integer and not an existing path is a camera index. Tracking stops at the end of the video or
stream, after --max_frames frames, or on q / Esc in the --show window. Without --init_box the first box is drawn
with the mouse (needs a display and an OpenCV build with GUI); the box must overlap the first frame. Without
--checkpoint a LoRAT config uses the trained one under the save_dir of --env_file (as tracking/test.py).
Outputs, with <stem> = <source name>_<script>_<config> (camera<N>_... for a camera):
<out>/<stem>.mp4 (mp4v; box, frame number, score and the tracker's frames per second drawn on every frame; at the
source's frame rate, 30 where it reports none), <stem>.txt (one x,y,w,h line per frame) and <stem>_time.txt (the
tracker's seconds per frame, frame 0 = initialisation, as tracking/test.py's <seq>_time.txt).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from lib.test.evaluation.datasets import list_images
from lib.test.evaluation.environment import env_settings
from lib.test.evaluation.results import format_boxes
from lib.test.tracker import TRACKER_BUILDERS, add_tracker_arguments, build_tracker, spec_from_args, tracker_kind
from lib.utils.device import resolve_device
from lib.utils.image import read_image
from lib.utils.io import atomic_write_text

DEFAULT_FPS = 30.0  # output frame rate for image folders and sources that report none
FPS_WINDOW = 30  # frames in the running average of the tracker's frame rate
WINDOW_NAME = "video_demo (q / Esc: stop)"
STOP_KEYS = (ord("q"), 27)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("script", help=f"tracker script: {', '.join(TRACKER_BUILDERS)}")
    parser.add_argument("config", help="config name, e.g. base_224")
    parser.add_argument("source", help="video file, folder of images (sorted by frame number) or camera index")
    parser.add_argument("--init_box", type=float, nargs=4, metavar=("X", "Y", "W", "H"), default=None)
    parser.add_argument("--max_frames", type=positive_int, default=None, help="stop after this many frames")
    parser.add_argument("--show", action="store_true", help="show the annotated frames live (needs a display)")
    add_tracker_arguments(parser)
    parser.add_argument("--env_file", default=None,
                        help="evaluation local.py whose save_dir holds the trained checkpoint (default "
                             "lib/test/evaluation/local.py; read only without --checkpoint)")
    parser.add_argument("--out", type=Path, default=Path("output") / "video_demo", help="output folder")
    return parser.parse_args(argv)


def parse_source(text: str) -> Path | int:
    """A camera index for an integer that is not an existing path, else the path."""
    path = Path(text)
    if not path.exists() and text.strip().isdigit():
        return int(text)
    return path


def capture_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """RGB frames of an opened capture until it ends; releases it."""
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def open_capture(target: str | int, label: str) -> tuple[Iterator[np.ndarray], float]:
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        raise SystemExit(f"error: cannot open {label}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    return capture_frames(capture), fps if fps > 0 else DEFAULT_FPS


def open_source(source: Path | int) -> tuple[Iterator[np.ndarray], float, str]:
    """(RGB frame iterator, frames per second, name for the outputs) of a camera, an image folder or a video."""
    if isinstance(source, int):
        frames, fps = open_capture(source, f"camera {source} (no such device, or it is in use; "
                                           "list cameras with e.g. `v4l2-ctl --list-devices`)")
        return frames, fps, f"camera{source}"
    name = source.stem or source.name
    if source.is_dir():
        return (read_image(f) for f in list_images(source, numeric=True)), DEFAULT_FPS, name
    if not source.is_file():
        raise FileNotFoundError(f"source {source} is neither a video file, an image folder nor a camera index")
    frames, fps = open_capture(str(source), f"video {source} (unsupported codec or not a video)")
    return frames, fps, name


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def select_box(image: np.ndarray) -> np.ndarray:
    """Let the user draw the first box; a clear error without a display or a GUI-enabled OpenCV."""
    if not has_display():
        raise SystemExit("error: no --init_box given and no display to draw it on; pass --init_box X Y W H")
    try:
        x, y, w, h = cv2.selectROI("select the target, then press ENTER", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                   showCrosshair=True)
        cv2.destroyAllWindows()
    except cv2.error as exc:
        raise SystemExit(f"error: OpenCV cannot open a window ({exc}); pass --init_box X Y W H instead") from None
    if w <= 0 or h <= 0:
        raise SystemExit("error: no box was drawn; pass --init_box X Y W H")
    return np.array([x, y, w, h], dtype=np.float64)


def open_window() -> None:
    """The --show window; a clear error without a display or a GUI-enabled OpenCV."""
    if not has_display():
        raise SystemExit("error: --show needs a display (DISPLAY or WAYLAND_DISPLAY is unset); drop --show")
    try:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_AUTOSIZE)
    except cv2.error as exc:
        raise SystemExit(f"error: --show: this OpenCV has no GUI support ({exc.err}); install opencv-python "
                         "instead of opencv-python-headless, or drop --show") from None


def show(bgr: np.ndarray) -> bool:
    """Display one annotated frame; True when the user pressed q or Esc."""
    cv2.imshow(WINDOW_NAME, bgr)
    return cv2.waitKey(1) & 0xFF in STOP_KEYS


def overlay_lines(index: int, confidence: float, fps: float) -> tuple[str, str]:
    """The text drawn on a frame: frame number and score, then the tracker's frame rate."""
    return f"#{index} score {confidence:.2f}", f"{fps:.1f} fps"


def running_fps(seconds: deque[float] | list[float]) -> float:
    """Frames per second over the given per-frame times (a clock tick as the least total, so never infinite)."""
    return len(seconds) / max(sum(seconds), 1e-9)


def annotate(image: np.ndarray, box: np.ndarray, lines: tuple[str, ...]) -> np.ndarray:
    """BGR copy of `image` with the box (green) and the text `lines` (red, top left) drawn on it."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if np.all(np.isfinite(box)):
        x, y, w, h = box
        cv2.rectangle(bgr, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), (0, 255, 0), 2)
    for row, line in enumerate(lines):
        cv2.putText(bgr, line, (5, 15 + 18 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
    return bgr


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.show:
        open_window()
    frames, fps, name = open_source(parse_source(args.source))
    if args.max_frames is not None:
        frames = itertools.islice(frames, args.max_frames)
    first = next(frames, None)
    if first is None:
        raise SystemExit(f"error: {args.source} holds no frames")
    try:
        resolve_device(args.device)
        needs_save_dir = args.checkpoint is None and tracker_kind(args.script).learned
        save_dir = env_settings(args.env_file).save_dir if needs_save_dir else None
        tracker = build_tracker(spec_from_args(args, save_dir))
    except KeyError as exc:
        raise SystemExit(f"error: {exc.args[0]}") from None
    except (ValueError, FileNotFoundError) as exc:  # DeviceError, ConfigError, CheckpointError are ValueErrors
        raise SystemExit(f"error: {exc}") from None
    init_box = np.asarray(args.init_box, dtype=np.float64) if args.init_box else select_box(first)
    try:
        start = time.perf_counter()
        tracker.initialize(first, init_box.copy())
        times = [time.perf_counter() - start]
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{name}_{args.script}_{args.config}"
    video_path, box_path, time_path = (args.out / f"{stem}{suffix}" for suffix in (".mp4", ".txt", "_time.txt"))
    partial_video = args.out / f".{stem}.partial.mp4"
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(partial_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SystemExit(f"error: cannot write {partial_video} with the mp4v codec")
    boxes, confidence = [init_box], 1.0
    recent = deque(times, maxlen=FPS_WINDOW)
    try:
        for index, image in enumerate(itertools.chain([first], frames)):
            if index > 0:
                start = time.perf_counter()
                box, confidence = tracker.track(image)
                times.append(time.perf_counter() - start)
                recent.append(times[-1])
                boxes.append(np.asarray(box, dtype=np.float64))
            bgr = annotate(image, boxes[-1], overlay_lines(index, confidence, running_fps(recent)))
            writer.write(bgr)
            if args.show and show(bgr):
                break
    except BaseException:
        writer.release()
        partial_video.unlink(missing_ok=True)
        raise
    finally:
        if args.show:
            cv2.destroyAllWindows()
    writer.release()
    os.replace(partial_video, video_path)
    atomic_write_text(time_path, "".join(f"{t:.8f}\n" for t in times))
    atomic_write_text(box_path, format_boxes(np.stack(boxes)))
    print(f"tracked {len(boxes)} frames at {running_fps(times):.1f} fps -> {video_path}, {box_path}, "
          f"{time_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
