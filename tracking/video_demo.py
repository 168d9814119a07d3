"""Track one object through a video file or an image folder; write an annotated video and a box file.

    python tracking/video_demo.py lorat base_224 clip.mp4 --init_box 100 120 40 60 --checkpoint ckpt.pth
    python tracking/video_demo.py opencv_mil default frames_dir/ --init_box 10 10 30 30 --out output/demo

Without --init_box the first box is drawn with the mouse (needs a display and an OpenCV build with GUI); the box
must overlap the first frame. Without --checkpoint a LoRAT config uses the trained one under the save_dir of
--env_file (as tracking/test.py).
Outputs: <out>/<name>_<script>_<config>.mp4 (mp4v) and .txt (one x,y,w,h line per frame).
"""
from __future__ import annotations

import argparse
import os
import sys
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

FOLDER_FPS = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("script", help=f"tracker script: {', '.join(TRACKER_BUILDERS)}")
    parser.add_argument("config", help="config name, e.g. base_224")
    parser.add_argument("source", type=Path, help="video file or folder of images (sorted by frame number)")
    parser.add_argument("--init_box", type=float, nargs=4, metavar=("X", "Y", "W", "H"), default=None)
    add_tracker_arguments(parser)
    parser.add_argument("--env_file", default=None,
                        help="evaluation local.py whose save_dir holds the trained checkpoint (default "
                             "lib/test/evaluation/local.py; read only without --checkpoint)")
    parser.add_argument("--out", type=Path, default=Path("output") / "video_demo", help="output folder")
    return parser.parse_args(argv)


def video_frames(path: Path) -> Iterator[np.ndarray]:
    """RGB frames of a video file."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path} (missing file or unsupported codec)")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def open_source(path: Path) -> tuple[Iterator[np.ndarray], float]:
    """(frame iterator, frames per second) of a video file or an image folder."""
    if path.is_dir():
        return (read_image(f) for f in list_images(path, numeric=True)), FOLDER_FPS
    if not path.is_file():
        raise FileNotFoundError(f"source {path} is neither a video file nor an image folder")
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return video_frames(path), fps if fps > 0 else FOLDER_FPS


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


def annotate(image: np.ndarray, box: np.ndarray, index: int, confidence: float) -> np.ndarray:
    """BGR copy of `image` with the box and the frame number / confidence drawn on it."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if np.all(np.isfinite(box)):
        x, y, w, h = box
        cv2.rectangle(bgr, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), (0, 255, 0), 2)
    cv2.putText(bgr, f"#{index} {confidence:.2f}", (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
    return bgr


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    frames, fps = open_source(args.source)
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
        tracker.initialize(first, init_box.copy())
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.source.stem or args.source.name}_{args.script}_{args.config}"
    video_path, box_path = args.out / f"{stem}.mp4", args.out / f"{stem}.txt"
    partial_video = args.out / f".{stem}.partial.mp4"
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(partial_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SystemExit(f"error: cannot write {partial_video} with the mp4v codec")
    boxes = [init_box]
    try:
        writer.write(annotate(first, init_box, 0, 1.0))
        for index, image in enumerate(frames, start=1):
            box, confidence = tracker.track(image)
            boxes.append(np.asarray(box, dtype=np.float64))
            writer.write(annotate(image, boxes[-1], index, confidence))
    except BaseException:
        writer.release()
        partial_video.unlink(missing_ok=True)
        raise
    writer.release()
    os.replace(partial_video, video_path)
    atomic_write_text(box_path, format_boxes(np.stack(boxes)))
    print(f"tracked {len(boxes)} frames -> {video_path}, {box_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
