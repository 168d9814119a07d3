"""Image decoding into the project's convention (RGB uint8 HxWx3), with errors that name the file."""
from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping
from types import MappingProxyType

import cv2
import numpy as np

# Normalisation statistics of the pretrained backbones (RGB, for pixels scaled to [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Per-channel RGB (0..1) mean and std a backbone was pretrained with (lib.models.backbone.ViTSpec.normalization);
# upstream's `normalization: imagenet | openai_clip` (trackit/core/transforms/dataset_norm_stats.py).
NORMALIZATIONS: Mapping[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = MappingProxyType({
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "openai_clip": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
})

_JPEG_SIGNATURE = b"\xff\xd8"
# libjpeg's warnings that mean the entropy-coded data is damaged (jerror.h JWRN_*): it still returns an image, with
# the damaged blocks filled in, and only prints the warning to stderr.
LIBJPEG_CORRUPTION_WARNINGS = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Inconsistent progression sequence",
    "Invalid SOS parameters",
)
# OpenCV gives no access to libjpeg's warnings, so JPEG decoding briefly points file descriptor 2 at a temporary
# file. The descriptor is process-wide: this lock keeps two threads of one process from redirecting it at once.
_STDERR_REDIRECT = threading.Lock()


def _imdecode_capturing_stderr(buf: np.ndarray, flags: int) -> tuple[np.ndarray | None, str]:
    """cv2.imdecode, plus whatever the C libraries wrote to stderr meanwhile."""
    with _STDERR_REDIRECT, tempfile.TemporaryFile() as capture:
        try:
            saved: int | None = os.dup(2)
        except OSError:  # no stderr (a detached process): libjpeg's warnings still land in the capture file
            saved = None
        try:
            os.dup2(capture.fileno(), 2)
            try:
                image = cv2.imdecode(buf, flags)
            finally:
                if saved is None:
                    os.close(2)
                else:
                    os.dup2(saved, 2)
        finally:
            if saved is not None:
                os.close(saved)
        capture.seek(0)
        return image, capture.read().decode("utf-8", errors="replace")


def decode_image(data: bytes, name_for_errors: str) -> np.ndarray:
    """Decode encoded image bytes (jpg/png/...) to an RGB uint8 HxWx3 array.

    `name_for_errors` is the file or LMDB key the bytes came from; it is named in the error. A JPEG whose data
    libjpeg reports as corrupt is an error too: the decoded image would silently hold made-up blocks.
    """
    if len(data) == 0:
        raise ValueError(f"image {name_for_errors} is empty (0 bytes); re-extract or re-download that file")
    buf = np.frombuffer(data, dtype=np.uint8)
    # The stored pixel grid, as upstream decodes it: annotations refer to it, so an EXIF orientation tag (which
    # OpenCV would otherwise apply) must not rotate the image away from its boxes.
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    if data.startswith(_JPEG_SIGNATURE):
        bgr, messages = _imdecode_capturing_stderr(buf, flags)
        corrupt = [line for line in messages.splitlines() if line.startswith(LIBJPEG_CORRUPTION_WARNINGS)]
        if corrupt:
            raise ValueError(
                f"image {name_for_errors} is a damaged JPEG (libjpeg: {'; '.join(corrupt)}); "
                "re-extract or re-download that file"
            )
        if messages:  # other output (e.g. a benign libjpeg notice) still reaches the terminal
            os.write(2, messages.encode("utf-8"))
    else:
        bgr = cv2.imdecode(buf, flags)
    if bgr is None:
        raise ValueError(
            f"image {name_for_errors} could not be decoded (corrupt or not an image); "
            "re-extract or re-download that file"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3; a missing, undecodable or damaged file is an error naming it."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} does not exist; check the dataset path in your local.py") from None
    return decode_image(data, path)
