"""Rendering of synthetic tracking scenes (shapes, textures, backgrounds, motion) for two visual domains.

Everything is drawn from an explicit ``numpy.random.Generator`` so a scene is a pure function of its seed.
Frames are RGB uint8; boxes are continuous pixel-edge ``xyxy``. Sprites are placed with the affine map
``frame = s * sprite + t`` (per axis, no rotation), so the target box is known exactly, not measured.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

Colour = np.ndarray  # float32 (3,) RGB in 0..255


# ----------------------------------------------------------------------------------------------- shapes
# A shape is a polygon normalised so that its bounding box is exactly [0, 1] x [0, 1].

def _normalise(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - lo) / (hi - lo)


def _radial(radii: np.ndarray, phase: float) -> np.ndarray:
    angles = phase + np.linspace(0.0, 2.0 * math.pi, len(radii), endpoint=False)
    return _normalise(np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1))


def _ellipse(rng: np.random.Generator) -> np.ndarray:
    return _radial(np.ones(64), 0.0)


def _rectangle(rng: np.random.Generator) -> np.ndarray:
    radius = rng.uniform(0.0, 0.3)
    corners = [(1 - radius, 1 - radius), (radius, 1 - radius), (radius, radius), (1 - radius, radius)]
    points = []
    for k, (cx, cy) in enumerate(corners):
        arc = np.linspace(k * math.pi / 2, (k + 1) * math.pi / 2, 6)
        points.append(np.stack([cx + radius * np.cos(arc), cy + radius * np.sin(arc)], axis=1))
    return _normalise(np.concatenate(points))


def _polygon(rng: np.random.Generator) -> np.ndarray:
    sides = int(rng.integers(3, 7))
    return _radial(np.ones(sides), rng.uniform(0.0, 2.0 * math.pi / sides))


def _star(rng: np.random.Generator) -> np.ndarray:
    tips = int(rng.integers(5, 8))
    radii = np.tile([1.0, rng.uniform(0.4, 0.6)], tips)
    return _radial(radii, rng.uniform(0.0, 2.0 * math.pi))


def _cross(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0.3, 0.4)
    b = 1.0 - a
    return np.array([(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a),
                     (a, a)], dtype=np.float64)


def _blob(rng: np.random.Generator) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
    radii = np.ones(48)
    for harmonic in (2, 3, 4):
        radii += rng.uniform(0.05, 0.2) * np.cos(harmonic * angles + rng.uniform(0.0, 2.0 * math.pi))
    return _radial(radii, 0.0)


def _arrow(rng: np.random.Generator) -> np.ndarray:
    shaft, head = rng.uniform(0.3, 0.5), rng.uniform(0.45, 0.65)
    top, bottom = 0.5 - shaft / 2, 0.5 + shaft / 2
    return np.array([(0, top), (head, top), (head, 0), (1, 0.5), (head, 1), (head, bottom), (0, bottom)],
                    dtype=np.float64)


SHAPES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "ellipse": _ellipse, "rectangle": _rectangle, "polygon": _polygon,
    "star": _star, "cross": _cross, "blob": _blob, "arrow": _arrow,
}


def rasterise_polygon(polygon: np.ndarray, out: np.ndarray, value: float | tuple[float, ...]) -> None:
    """Fill a polygon given in continuous pixel-edge coordinates (cv2 uses pixel centres: shift by -0.5)."""
    points = np.round((polygon - 0.5) * 16.0).astype(np.int32)
    cv2.fillPoly(out, [points], value, lineType=cv2.LINE_AA, shift=4)


# --------------------------------------------------------------------------------------------- textures
# A texture fills an h x w patch with a pattern mixing two colours; returns float32 HxWx3.

def _mix(weight: np.ndarray, c1: Colour, c2: Colour) -> np.ndarray:
    return (c1 * weight[..., None] + c2 * (1.0 - weight[..., None])).astype(np.float32)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32) + 0.5)


def _stripes(rng: np.random.Generator, h: int, w: int, c1: Colour, c2: Colour) -> np.ndarray:
    x, y = _grid(h, w)
    angle, period = rng.uniform(0.0, math.pi), rng.uniform(4.0, 9.0)
    wave = np.sin(2.0 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / period)
    return _mix(0.5 + 0.5 * np.tanh(3.0 * wave), c1, c2)


def _checker(rng: np.random.Generator, h: int, w: int, c1: Colour, c2: Colour) -> np.ndarray:
    x, y = _grid(h, w)
    cell = rng.uniform(3.0, 7.0)
    return _mix(((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float32), c1, c2)


def _gradient(rng: np.random.Generator, h: int, w: int, c1: Colour, c2: Colour) -> np.ndarray:
    x, y = _grid(h, w)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ramp = x * math.cos(angle) + y * math.sin(angle)
    return _mix((ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6), c1, c2)


def _dots(rng: np.random.Generator, h: int, w: int, c1: Colour, c2: Colour) -> np.ndarray:
    x, y = _grid(h, w)
    period = rng.uniform(4.0, 7.0)
    dx, dy = (x % period) - period / 2, (y % period) - period / 2
    return _mix((dx * dx + dy * dy < (0.3 * period) ** 2).astype(np.float32), c1, c2)


def _speckle(rng: np.random.Generator, h: int, w: int, c1: Colour, c2: Colour) -> np.ndarray:
    coarse = rng.random((max(h // 3, 2), max(w // 3, 2))).astype(np.float32)
    noise = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    return _mix(np.clip((noise - 0.5) * 3.0 + 0.5, 0.0, 1.0), c1, c2)


def _rings(rng: np.random.Generator, h: int, w: int, c1: Colour, c2: Colour) -> np.ndarray:
    x, y = _grid(h, w)
    period = rng.uniform(4.0, 8.0)
    radius = np.hypot(x - w / 2, y - h / 2)
    return _mix(0.5 + 0.5 * np.tanh(3.0 * np.sin(2.0 * math.pi * radius / period)), c1, c2)


TEXTURES: dict[str, Callable[[np.random.Generator, int, int, Colour, Colour], np.ndarray]] = {
    "stripes": _stripes, "checker": _checker, "gradient": _gradient,
    "dots": _dots, "speckle": _speckle, "rings": _rings,
}


# -------------------------------------------------------------------------------------------- colours

def hsv_colour(hue: float, saturation: float, value: float) -> Colour:
    """RGB (0..255, float32) of an HSV colour with hue in turns (wrapped)."""
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32) * 255.0


@dataclass(frozen=True)
class DomainStyle:
    """What makes a domain look like itself: object families, textures, palette and background."""

    shapes: tuple[str, ...]
    textures: tuple[str, ...]
    family: str  # GOT-10k "major_class" of the targets
    background: str  # key of BACKGROUNDS
    background_hues: tuple[float, float]  # hue range (turns) of the scene palette
    second_colour_hue_shift: float  # second texture colour: hue shift (turns) of the first
    second_colour_value: float  # ... and its value multiplier
    distractor_hue_shift: tuple[float, float]  # how far (turns) look-alikes' hue is from the target's
    key_spacing: tuple[int, int]  # frames between motion key points (smaller = faster, jerkier motion)

    def object_colours(self, rng: np.random.Generator, hue: float) -> tuple[Colour, Colour]:
        first = hsv_colour(hue, rng.uniform(0.65, 1.0), rng.uniform(0.75, 1.0))
        second = hsv_colour(hue + self.second_colour_hue_shift, rng.uniform(0.5, 1.0),
                            rng.uniform(0.75, 1.0) * self.second_colour_value)
        return first, second

    def scene_colour(self, rng: np.random.Generator, value: tuple[float, float]) -> Colour:
        return hsv_colour(rng.uniform(*self.background_hues), rng.uniform(0.25, 0.6), rng.uniform(*value))


# -------------------------------------------------------------------------------------------- backgrounds

def _smooth_noise(rng: np.random.Generator, w: int, h: int, cell: int) -> np.ndarray:
    coarse = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _meadow(rng: np.random.Generator, w: int, h: int, style: DomainStyle) -> np.ndarray:
    """Soft low-frequency colour field with blurred scattered shapes (domain A)."""
    low = _smooth_noise(rng, w, h, 24)
    canvas = _mix(np.clip(low, 0.0, 1.0), style.scene_colour(rng, (0.5, 0.8)), style.scene_colour(rng, (0.3, 0.6)))
    for _ in range(int(rng.integers(12, 22))):
        size = rng.uniform(8.0, 30.0, size=2)
        corner = rng.uniform([-10.0, -10.0], [w, h])
        polygon = corner + SHAPES[str(rng.choice(("ellipse", "rectangle")))](rng) * size
        rasterise_polygon(polygon, canvas, tuple(float(c) for c in style.scene_colour(rng, (0.3, 0.85))))
    canvas = cv2.GaussianBlur(canvas, (0, 0), 1.2)
    canvas += (_smooth_noise(rng, w, h, 3)[..., None] - 0.5) * 30.0
    return canvas


def _tiles(rng: np.random.Generator, w: int, h: int, style: DomainStyle) -> np.ndarray:
    """Sharp brick pattern cluttered with small ornamental shapes of many colours (domain B)."""
    tile_w, tile_h = rng.uniform(10.0, 20.0), rng.uniform(7.0, 14.0)
    rows, cols = int(h / tile_h) + 2, int(w / tile_w) + 3
    colours = np.stack([style.scene_colour(rng, (0.2, 0.55)) for _ in range(rows * cols)]).reshape(rows, cols, 3)
    x, y = _grid(h, w)
    row = np.floor(y / tile_h).astype(np.int64)
    col = np.floor(x / tile_w + 0.5 * (row % 2)).astype(np.int64)
    canvas = colours[row, col].astype(np.float32)
    mortar = ((y % tile_h) < 1.5) | (((x / tile_w + 0.5 * (row % 2)) % 1.0) * tile_w < 1.5)
    canvas[mortar] *= 0.45
    for _ in range(int(rng.integers(15, 30))):
        size = rng.uniform(5.0, 14.0, size=2)
        polygon = rng.uniform([-5.0, -5.0], [w, h]) + SHAPES[str(rng.choice(style.shapes))](rng) * size
        colour = hsv_colour(rng.uniform(0.0, 1.0), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))
        rasterise_polygon(polygon, canvas, tuple(float(c) for c in colour))
    canvas += (_smooth_noise(rng, w, h, 2)[..., None] - 0.5) * 24.0
    return canvas


def _mixed(rng: np.random.Generator, w: int, h: int, style: DomainStyle) -> np.ndarray:
    """Either kind of background, drawn per sequence (the broad pretraining domain P)."""
    return (_meadow if rng.random() < 0.5 else _tiles)(rng, w, h, style)


BACKGROUNDS: dict[str, Callable[[np.random.Generator, int, int, DomainStyle], np.ndarray]] = {
    "meadow": _meadow, "tiles": _tiles, "mixed": _mixed,
}

DOMAINS: dict[str, DomainStyle] = {
    "A": DomainStyle(shapes=("ellipse", "rectangle", "polygon"), textures=("stripes", "checker", "gradient"),
                     family="geometric", background="meadow", background_hues=(0.08, 0.35),
                     second_colour_hue_shift=0.5, second_colour_value=1.0, distractor_hue_shift=(0.2, 0.5),
                     key_spacing=(12, 20)),
    "B": DomainStyle(shapes=("star", "cross", "blob", "arrow"), textures=("dots", "speckle", "rings"),
                     family="ornamental", background="tiles", background_hues=(0.55, 0.8),
                     second_colour_hue_shift=0.0, second_colour_value=0.3, distractor_hue_shift=(0.08, 0.25),
                     key_spacing=(10, 16)),
    # The demo backbone's pretraining domain (tracking/pretrain_demo_backbone.py), standing in for the broad image
    # collections real backbones learn from: every shape, texture, background kind and hue, and the motion and
    # distractor ranges of both A and B.
    "P": DomainStyle(shapes=tuple(SHAPES), textures=tuple(TEXTURES), family="generic", background="mixed",
                     background_hues=(0.0, 1.0), second_colour_hue_shift=0.25, second_colour_value=0.65,
                     distractor_hue_shift=(0.08, 0.5), key_spacing=(10, 20)),
}


# ---------------------------------------------------------------------------------------------- sprites

@dataclass(frozen=True)
class Sprite:
    """A textured shape: colour and alpha patches plus the exact shape box (xyxy) in patch coordinates."""

    rgb: np.ndarray  # float32 h x w x 3
    alpha: np.ndarray  # float32 h x w in [0, 1]
    box: tuple[float, float, float, float]
    shape: str
    texture: str


_SPRITE_PAD = 2


def make_sprite(rng: np.random.Generator, shape: str, texture: str, colours: tuple[Colour, Colour],
                width: float, height: float) -> Sprite:
    """Render ``shape`` filled with ``texture`` so that its box is ``width`` x ``height`` pixels."""
    pw, ph = int(math.ceil(width)) + 2 * _SPRITE_PAD, int(math.ceil(height)) + 2 * _SPRITE_PAD
    polygon = _SPRITE_PAD + SHAPES[shape](rng) * np.array([width, height])
    alpha = np.zeros((ph, pw), dtype=np.uint8)
    rasterise_polygon(polygon, alpha, 255)
    rgb = TEXTURES[texture](rng, ph, pw, *colours)
    x, y = _grid(ph, pw)
    radius2 = ((x - pw / 2) / (width / 2)) ** 2 + ((y - ph / 2) / (height / 2)) ** 2
    rgb *= (1.05 - 0.3 * np.clip(radius2, 0.0, 1.0))[..., None]  # mild shading: reads as a solid object
    box = (float(_SPRITE_PAD), float(_SPRITE_PAD), _SPRITE_PAD + width, _SPRITE_PAD + height)
    return Sprite(rgb, alpha.astype(np.float32) / 255.0, box, shape, texture)


@dataclass(frozen=True)
class Placed:
    """A sprite warped into a patch whose top-left pixel sits at integer frame position (x, y)."""

    rgb: np.ndarray
    alpha: np.ndarray
    x: int
    y: int


def place(sprite: Sprite, box: np.ndarray) -> Placed:
    """Warp ``sprite`` so that its shape box lands exactly on the continuous xyxy ``box`` (frame coordinates)."""
    sx = (box[2] - box[0]) / (sprite.box[2] - sprite.box[0])
    sy = (box[3] - box[1]) / (sprite.box[3] - sprite.box[1])
    x0, y0 = int(math.floor(box[0])) - 1, int(math.floor(box[1])) - 1
    width, height = int(math.ceil(box[2])) + 1 - x0, int(math.ceil(box[3])) + 1 - y0
    tx, ty = box[0] - sx * sprite.box[0] - x0, box[1] - sy * sprite.box[1] - y0
    # continuous x' = sx * x + tx  <=>  pixel-centre X' = sx * X + tx + 0.5 * sx - 0.5 (cv2 convention)
    matrix = np.array([[sx, 0.0, tx + 0.5 * sx - 0.5], [0.0, sy, ty + 0.5 * sy - 0.5]])
    rgb = cv2.warpAffine(sprite.rgb, matrix, (width, height), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = cv2.warpAffine(sprite.alpha, matrix, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return Placed(rgb, alpha, x0, y0)


def _overlap(placed: Placed, frame_w: int, frame_h: int) -> tuple[slice, slice, slice, slice] | None:
    """(frame rows, frame cols, patch rows, patch cols) of the part of ``placed`` inside the frame."""
    h, w = placed.alpha.shape
    fx0, fy0 = max(placed.x, 0), max(placed.y, 0)
    fx1, fy1 = min(placed.x + w, frame_w), min(placed.y + h, frame_h)
    if fx0 >= fx1 or fy0 >= fy1:
        return None
    return (slice(fy0, fy1), slice(fx0, fx1),
            slice(fy0 - placed.y, fy1 - placed.y), slice(fx0 - placed.x, fx1 - placed.x))


def composite(frame: np.ndarray, placed: Placed, coverage: np.ndarray | None = None) -> None:
    """Alpha-blend ``placed`` over ``frame`` in place; optionally accumulate its alpha into ``coverage``."""
    region = _overlap(placed, frame.shape[1], frame.shape[0])
    if region is None:
        return
    fr, fc, pr, pc = region
    alpha = placed.alpha[pr, pc][..., None]
    frame[fr, fc] = frame[fr, fc] * (1.0 - alpha) + placed.rgb[pr, pc] * alpha
    if coverage is not None:
        coverage[fr, fc] += placed.alpha[pr, pc] * (1.0 - coverage[fr, fc])


def visible_area(placed: Placed, frame_w: int, frame_h: int, cover: np.ndarray | None) -> float:
    """Alpha mass of ``placed`` inside the frame, not hidden by ``cover`` (alpha of things in front)."""
    region = _overlap(placed, frame_w, frame_h)
    if region is None:
        return 0.0
    fr, fc, pr, pc = region
    alpha = placed.alpha[pr, pc]
    return float((alpha if cover is None else alpha * (1.0 - cover[fr, fc])).sum(dtype=np.float64))


# ----------------------------------------------------------------------------------------------- motion

def spline(keys: np.ndarray, n: int) -> np.ndarray:
    """Catmull-Rom curve through ``keys`` (K x D, spread evenly over n frames); passes through every key."""
    count = len(keys)
    t = np.linspace(0.0, count - 1.0, n)
    i = np.clip(np.floor(t).astype(np.int64), 0, count - 2)
    u = (t - i)[:, None]
    p0, p1 = keys[np.maximum(i - 1, 0)], keys[i]
    p2, p3 = keys[i + 1], keys[np.minimum(i + 2, count - 1)]
    return 0.5 * (2 * p1 + (p2 - p0) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                  + (3 * p1 - p0 - 3 * p2 + p3) * u ** 3)


def key_count(rng: np.random.Generator, n: int, spacing: tuple[int, int]) -> int:
    return max(2, int(round((n - 1) / rng.uniform(*spacing))) + 1)


def object_track(rng: np.random.Generator, n: int, frame_w: int, frame_h: int, size: tuple[float, float],
                 spacing: tuple[int, int], exit_probability: float, inside_at_start: bool) -> np.ndarray:
    """Smooth per-frame xyxy boxes: wandering centre, breathing scale and aspect ratio, optional exit/re-entry.

    With ``inside_at_start`` the first box lies fully inside the frame (the tracker's init box must be).
    """
    keys = key_count(rng, n, spacing)
    log_scale = np.clip(rng.normal(0.0, 0.25, keys), -0.5, 0.5)
    log_aspect = np.clip(rng.normal(0.0, 0.15, keys), -0.35, 0.35)
    widths = size[0] * np.exp(log_scale + log_aspect / 2)
    heights = size[1] * np.exp(log_scale - log_aspect / 2)
    centres = rng.uniform([0.1 * frame_w, 0.1 * frame_h], [0.9 * frame_w, 0.9 * frame_h], size=(keys, 2))
    if inside_at_start:
        half = np.array([widths[0], heights[0]]) / 2 + 2.0
        centres[0] = rng.uniform(half, np.array([frame_w, frame_h]) - half)
    if keys >= 3 and rng.random() < exit_probability:
        k = int(rng.integers(1, keys - 1))
        axis = int(rng.integers(0, 2))
        extent = (widths[k], heights[k])[axis] / 2 + rng.uniform(2.0, 12.0)
        centres[k, axis] = -extent if rng.random() < 0.5 else (frame_w, frame_h)[axis] + extent
    curve = spline(np.column_stack([centres, np.log(widths), np.log(heights)]), n)
    w, h = np.exp(curve[:, 2]), np.exp(curve[:, 3])
    return np.column_stack([curve[:, 0] - w / 2, curve[:, 1] - h / 2, curve[:, 0] + w / 2, curve[:, 1] + h / 2])


def _intersects(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def occluder_track(rng: np.random.Generator, n: int, target: np.ndarray, size: tuple[float, float]) -> np.ndarray:
    """Straight-line xyxy boxes that cross the target mid-sequence and are clear of it at frame 0."""
    t0 = int(rng.integers(max(n // 4, 1), max(3 * n // 4, 2)))
    crossing = (target[t0, :2] + target[t0, 2:]) / 2 + rng.normal(0.0, 0.25, 2) * (target[t0, 2:] - target[t0, :2])
    angle = rng.uniform(0.0, 2.0 * math.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    speed = rng.uniform(1.5, 4.0)
    half = np.array(size) / 2
    times = np.arange(n, dtype=np.float64)[:, None] - t0
    while True:  # speed up until the occluder starts clear of the init box (terminates: distance grows with speed)
        centres = crossing + direction * speed * times
        boxes = np.hstack([centres - half, centres + half])
        if not _intersects(boxes[0] + [-2.0, -2.0, 2.0, 2.0], target[0]):  # margin: anti-aliased edges
            return boxes
        speed *= 1.5


# ------------------------------------------------------------------------------------------------ scenes

@dataclass(frozen=True)
class SceneParams:
    n_frames: int
    image_size: tuple[int, int]  # [W, H]
    distractors: tuple[int, int]
    occluders: tuple[int, int]
    exit_probability: float


@dataclass(frozen=True)
class RenderedSequence:
    frames: list[np.ndarray]  # RGB uint8 H x W x 3
    boxes: np.ndarray  # (N, 4) xyxy float64 of the whole target, unclipped
    in_view: np.ndarray  # (N,) fraction of the target inside the image
    visible: np.ndarray  # (N,) fraction of the target inside the image and not occluded
    shape: str
    texture: str
    colour_name: str
    mean_speed: float  # centre speed in target sizes per frame


_COLOUR_NAMES = ("red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue", "violet", "magenta",
                 "pink")


def random_object(rng: np.random.Generator, style: DomainStyle, hue: float, shape: str, texture: str,
                   size: tuple[float, float]) -> Sprite:
    return make_sprite(rng, shape, texture, style.object_colours(rng, hue), size[0], size[1])


def _camera_matrices(rng: np.random.Generator, n: int, frame_w: int, frame_h: int, canvas_w: int,
                     canvas_h: int) -> np.ndarray:
    """Per-frame 2x3 cv2 matrices mapping the background canvas to the frame (smooth pan and zoom)."""
    keys = key_count(rng, n, (15, 30))
    zoom = np.exp(rng.uniform(math.log(0.9), math.log(1.15), keys))
    half_w, half_h = frame_w / (2 * zoom), frame_h / (2 * zoom)
    cx = rng.uniform(half_w, canvas_w - half_w)
    cy = rng.uniform(half_h, canvas_h - half_h)
    z, cx, cy = spline(np.column_stack([zoom, cx, cy]), n).T
    matrices = np.zeros((n, 2, 3))
    matrices[:, 0, 0] = matrices[:, 1, 1] = z
    matrices[:, 0, 2] = frame_w / 2 - z * cx + 0.5 * z - 0.5
    matrices[:, 1, 2] = frame_h / 2 - z * cy + 0.5 * z - 0.5
    return matrices


def render_sequence(rng: np.random.Generator, style: DomainStyle, params: SceneParams) -> RenderedSequence:
    """Render one sequence: scrolling/zooming background, look-alike distractors behind the target,
    occluders in front of it, smooth global illumination change."""
    n, (frame_w, frame_h) = params.n_frames, params.image_size
    canvas_w, canvas_h = int(frame_w * 1.5), int(frame_h * 1.5)
    background = BACKGROUNDS[style.background](rng, canvas_w, canvas_h, style)
    cameras = _camera_matrices(rng, n, frame_w, frame_h, canvas_w, canvas_h)

    base = min(frame_w, frame_h) * rng.uniform(0.15, 0.35)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    size = (base * math.sqrt(aspect), base / math.sqrt(aspect))
    hue = rng.uniform(0.0, 1.0)
    shape, texture = str(rng.choice(style.shapes)), str(rng.choice(style.textures))
    target = random_object(rng, style, hue, shape, texture, size)
    target_boxes = object_track(rng, n, frame_w, frame_h, size, style.key_spacing, params.exit_probability, True)

    distractors = []
    for _ in range(int(rng.integers(params.distractors[0], params.distractors[1] + 1))):
        shift = rng.uniform(*style.distractor_hue_shift) * rng.choice((-1.0, 1.0))
        d_size = (size[0] * rng.uniform(0.7, 1.3), size[1] * rng.uniform(0.7, 1.3))
        d_texture = texture if rng.random() < 0.5 else str(rng.choice(style.textures))
        sprite = random_object(rng, style, hue + shift, shape, d_texture, d_size)
        distractors.append((sprite, object_track(rng, n, frame_w, frame_h, d_size, style.key_spacing, 0.3, False)))

    occluders = []
    for _ in range(int(rng.integers(params.occluders[0], params.occluders[1] + 1))):
        long_side, short_side = base * rng.uniform(1.2, 2.5), base * rng.uniform(0.5, 1.0)
        o_size = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
        colours = (style.scene_colour(rng, (0.2, 0.5)), style.scene_colour(rng, (0.5, 0.8)))
        sprite = make_sprite(rng, str(rng.choice(("rectangle", "blob"))), "speckle", colours, *o_size)
        occluders.append((sprite, occluder_track(rng, n, target_boxes, o_size)))

    gain = spline(rng.uniform(0.85, 1.15, (key_count(rng, n, (20, 40)), 1)), n)[:, 0]
    frames, in_view, visible = [], np.zeros(n), np.zeros(n)
    for t in range(n):
        frame = cv2.warpAffine(background, cameras[t], (frame_w, frame_h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        for sprite, boxes in distractors:
            composite(frame, place(sprite, boxes[t]))
        placed = place(target, target_boxes[t])
        composite(frame, placed)
        cover = np.zeros((frame_h, frame_w), dtype=np.float32)
        for sprite, boxes in occluders:
            composite(frame, place(sprite, boxes[t]), cover)
        box = target_boxes[t]
        if box[0] < frame_w and box[1] < frame_h and box[2] > 0 and box[3] > 0:  # else only interpolation bleed
            total = float(placed.alpha.sum(dtype=np.float64))
            in_view[t] = visible_area(placed, frame_w, frame_h, None) / total
            visible[t] = visible_area(placed, frame_w, frame_h, cover) / total
        frames.append(np.clip(frame * gain[t] + 0.5, 0.0, 255.0).astype(np.uint8))

    centres = (target_boxes[:, :2] + target_boxes[:, 2:]) / 2
    speed = float(np.mean(np.linalg.norm(np.diff(centres, axis=0), axis=1))) / base if n > 1 else 0.0
    colour_name = _COLOUR_NAMES[int(hue * len(_COLOUR_NAMES)) % len(_COLOUR_NAMES)]
    return RenderedSequence(frames, target_boxes, np.clip(in_view, 0.0, 1.0), np.clip(visible, 0.0, 1.0),
                            shape, texture, colour_name, speed)
