"""Image decoding into the project's convention (RGB uint8 HxWx3), with errors that name the file."""
from __future__ import annotations

import os

import cv2
import numpy as np

# ImageNet statistics of the pretrained backbones (RGB, for pixels scaled to [0, 1]); training and tracking normalise
# with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode_image(data: bytes, name_for_errors: str) -> np.ndarray:
    """Decode encoded image bytes (jpg/png/...) to an RGB uint8 HxWx3 array.

    `name_for_errors` is the file or LMDB key the bytes came from; it is named in the error.
    """
    if len(data) == 0:
        raise ValueError(f"image {name_for_errors} is empty (0 bytes); re-extract or re-download that file")
    buf = np.frombuffer(data, dtype=np.uint8)
    # The stored pixel grid, as upstream decodes it: annotations refer to it, so an EXIF orientation tag (which
    # OpenCV would otherwise apply) must not rotate the image away from its boxes.
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ValueError(
            f"image {name_for_errors} could not be decoded (corrupt or not an image); "
            "re-extract or re-download that file"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3; a missing or undecodable file is an error naming it."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} does not exist; check the dataset path in your local.py") from None
    return decode_image(data, path)
