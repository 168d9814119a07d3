"""Writers of tiny datasets in the real on-disk formats (64x48 jpgs), shared by the dataset/sampler/lmdb tests.

Frame k of a video is a uniform grey image of value `frame_value(k)`, so a test can tell which file was read.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

W, H = 64, 48


def frame_value(k: int) -> int:
    return 20 + 30 * k


def write_jpg(path: str, value: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.full((H, W, 3), value, dtype=np.uint8)
    assert cv2.imwrite(path, image)


def write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _lasot_sequence(seq: str, boxes: str, full_occlusion: str, out_of_view: str, frames: int) -> None:
    write_text(f"{seq}/groundtruth.txt", boxes)
    write_text(f"{seq}/full_occlusion.txt", full_occlusion)
    write_text(f"{seq}/out_of_view.txt", out_of_view)
    for k in range(frames):
        write_jpg(f"{seq}/img/{k + 1:08d}.jpg", frame_value(k))


def make_lasot(root: str) -> None:
    """airplane-2, airplane-10 (5 frames each) and zebra-1 (3 frames); 1-based boxes on disk."""
    # airplane-10: frame0 out of view, frame2 fully occluded, frame4 zero-width -> kept frames 1..3.
    _lasot_sequence(f"{root}/airplane/airplane-10", "11,6,20,10\n11,6,20,10\n12,7,20,10\n-9,-9,20,20\n1,1,0,5\n",
                    "0,0,1,0,0", "1,0,0,0,0", 5)
    _lasot_sequence(f"{root}/airplane/airplane-2", "1,1,10,10\n101,101,10,10\n1,1,10,10\n1,1,10,10\n1,1,10,10\n",
                    "0,0,0,0,0\n", "0,0,0,0,0\n", 5)
    _lasot_sequence(f"{root}/zebra/zebra-1", "5,5,10,10\n5,5,10,10\n5,5,10,10\n", "0,0,0", "0,0,0", 3)


LASOT_NAMES = ["zebra-1", "airplane-10", "airplane-2"]


def make_got10k(root: str, subset: str = "train", names: tuple[str, ...] = ("GOT-10k_Train_000001", "GOT-10k_Train_000002"),
                frames: int = 4) -> None:
    write_text(f"{root}/{subset}/list.txt", "\n".join(names) + "\n")
    for i, name in enumerate(names):
        seq = f"{root}/{subset}/{name}"
        rows = [f"{2.5 + i:.4f},{3.0:.4f},{10.25:.4f},{8.0:.4f}" for _ in range(frames)]
        write_text(f"{seq}/groundtruth.txt", "\n".join(rows) + "\n")
        absence = ["0"] * frames
        absence[-1] = "1"  # last frame absent -> trimmed
        write_text(f"{seq}/absence.label", "\n".join(absence) + "\n")
        write_text(f"{seq}/cover.label", "\n".join(str(min(k + 5, 8)) for k in range(frames)) + "\n")
        for k in range(frames):
            write_jpg(f"{seq}/{k + 1:08d}.jpg", frame_value(k))


def make_trackingnet(root: str) -> None:
    for chunk, videos in (("TRAIN_0", ("vid_b", "vid_a")), ("TRAIN_1", ("vid_c",))):
        for video in videos:
            write_text(f"{root}/{chunk}/anno/{video}.txt", "1.5,2.5,10,12\n60,40,10,10\n3,4,5,6\n")
            for k in range(3):
                write_jpg(f"{root}/{chunk}/frames/{video}/{k}.jpg", frame_value(k))


def make_coco(root: str) -> dict:
    content = {
        "images": [
            {"id": 7, "file_name": "000000000007.jpg", "width": W, "height": H},
            {"id": 3, "file_name": "000000000003.jpg", "width": W, "height": H},
            {"id": 5, "file_name": "000000000005.jpg", "width": W, "height": H},
            {"id": 9, "file_name": "000000000009.jpg", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 1, "image_id": 3, "bbox": [1.0, 2.0, 10.0, 20.0], "iscrowd": 0, "category_id": 1, "area": 200},
            {"id": 2, "image_id": 7, "bbox": [50.0, 40.0, 30.0, 30.0], "iscrowd": 0, "category_id": 1, "area": 900},
            {"id": 3, "image_id": 3, "bbox": [0.0, 0.0, 30.0, 30.0], "iscrowd": 1, "category_id": 1, "area": 900},
            {"id": 4, "image_id": 3, "bbox": [20.0, 5.0, 4.0, 6.0], "iscrowd": 0, "category_id": 2, "area": 24},
            {"id": 5, "image_id": 5, "bbox": [5.0, 5.0, 10.0, 10.0], "iscrowd": 1, "category_id": 1, "area": 100},
            {"id": 6, "image_id": 9, "bbox": [5.0, 5.0, 0.0, 10.0], "iscrowd": 0, "category_id": 1, "area": 0},
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    write_text(f"{root}/annotations/instances_train2017.json", json.dumps(content))
    for k, image in enumerate(content["images"]):
        write_jpg(f"{root}/images/train2017/{image['file_name']}", frame_value(k))
    return content
