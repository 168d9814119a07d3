"""Test benchmarks read from their native on-disk layouts, behind one registry: `get_dataset(name, env)`.

Coordinate conventions follow the official LoRAT evaluation (upstream-lorat.md §5.1): LaSOT boxes are
1-based in the files and are shifted by -1 on load (result files get the +1 back, `Sequence.file_offset`);
LaSOT-extension, GOT-10k, TrackingNet, TNL2K, OTB, UAV123 and NfS are used as they are in the files.
Visibility: LaSOT / LaSOT-ext `visible = not full_occlusion and not out_of_view`; GOT-10k-layout sets
(GOT-10k val, synthetic) `visible = absence == 0` plus their `cover` labels.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Callable

import numpy as np

from lib.test.evaluation.data import Sequence
from lib.test.evaluation.environment import EnvSettings, env_settings
from lib.utils.synthetic import domain_dir

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
_NUMBER = re.compile(r"\d+")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# ----------------------------------------------------------------------------------------------- file helpers
def _locate_box_error(path: Path, lines: list[str]) -> None:
    """Raise an error naming the first malformed line of a box file."""
    for line_no, line in enumerate(lines, start=1):
        fields = [v for v in re.split(r"[,\s]+", line.strip()) if v]
        if not fields:
            continue
        try:
            [float(v) for v in fields]
        except ValueError:
            raise ValueError(f"{path}:{line_no}: cannot parse {line.strip()!r} as numbers x,y,w,h") from None
        if len(fields) != 4:
            raise ValueError(f"{path}:{line_no}: expected 4 values x,y,w,h, got {len(fields)}")


def read_box_file(path: Path, max_rows: int | None = None) -> np.ndarray:
    """Parse an `x,y,w,h`-per-line file (comma, tab or space separated; `NaN` allowed) into float64 (N, 4)."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist; check the dataset folder")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:max_rows]
    if not lines:
        raise ValueError(f"annotation file {path} is empty; re-extract the dataset")
    text = "\n".join(re.sub(r"[,\s]+", ",", line.strip()) for line in lines)
    try:
        boxes = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        _locate_box_error(path, lines)
        raise
    if boxes.shape[1] != 4:
        _locate_box_error(path, lines)
    return boxes


def read_int_flags(path: Path) -> np.ndarray:
    """Parse a flag/label file (one value per line, or one comma-separated line) into int64 (N,)."""
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist; check the dataset folder")
    text = path.read_text(encoding="utf-8")
    try:
        return np.asarray([int(v) for v in re.split(r"[,\s]+", text.strip()) if v], dtype=np.int64)
    except ValueError:
        raise ValueError(f"{path}: expected integers separated by commas or new lines") from None


def _numeric_key(path: Path) -> tuple[int, str]:
    numbers = _NUMBER.findall(path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def list_images(folder: Path, numeric: bool) -> tuple[str, ...]:
    """Image files of `folder`, sorted by the number in their name (`numeric`) or by name."""
    if not folder.is_dir():
        raise FileNotFoundError(f"frame folder {folder} does not exist; check the dataset folder")
    files = [p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"frame folder {folder} holds no images; re-extract the dataset")
    files.sort(key=_numeric_key if numeric else (lambda p: p.name))
    return tuple(str(p) for p in files)


def read_name_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a split file."""
    if not path.is_file():
        raise FileNotFoundError(f"sequence list {path} does not exist")
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _check_lengths(frames: tuple[str, ...], gt: np.ndarray, where: Path) -> None:
    if len(frames) != len(gt):
        raise ValueError(f"{where}: {len(gt)} annotated boxes but {len(frames)} frames; the sequence is incomplete")


def _subfolders_with(root: Path, filename: str) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / filename).is_file())


# ----------------------------------------------------------------------------------------------- readers
def _lasot_style_sequence(seq_dir: Path, dataset: str, shift: float) -> Sequence:
    """A LaSOT-layout sequence; `shift` is subtracted from x, y (1 for LaSOT, 0 for LaSOT-ext)."""
    if not seq_dir.is_dir():
        raise FileNotFoundError(f"{dataset} sequence folder {seq_dir} does not exist; the dataset is incomplete")
    gt = read_box_file(seq_dir / "groundtruth.txt")
    gt[:, :2] -= shift
    occlusion = read_int_flags(seq_dir / "full_occlusion.txt")
    out_of_view = read_int_flags(seq_dir / "out_of_view.txt")
    for label, flags in (("full_occlusion.txt", occlusion), ("out_of_view.txt", out_of_view)):
        if len(flags) != len(gt):
            raise ValueError(f"{seq_dir / label}: {len(flags)} flags for {len(gt)} boxes in groundtruth.txt")
    frames = tuple(str(seq_dir / "img" / f"{i:08d}.jpg") for i in range(1, len(gt) + 1))
    visible = (occlusion == 0) & (out_of_view == 0)
    return Sequence(seq_dir.name, frames, dataset, gt, visible=visible, file_offset=shift)


def load_lasot(env: EnvSettings) -> list[Sequence]:
    """LaSOT test set: the 280 sequences of the toolkit's testing_set.txt (splits/lasot_test.txt)."""
    root = Path(env.require("lasot_path"))
    names = read_name_list(SPLITS_DIR / "lasot_test.txt")
    return [_lasot_style_sequence(root / name.rsplit("-", 1)[0] / name, "lasot", 1.0) for name in names]


def load_lasot_extension_subset(env: EnvSettings) -> list[Sequence]:
    """LaSOT extension (150 sequences, 15 classes): every `<class>/<seq>` folder; boxes NOT shifted (upstream)."""
    root = Path(env.require("lasot_extension_subset_path"))
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    seq_dirs = [d for cls in classes for d in _subfolders_with(cls, "groundtruth.txt")]
    if not seq_dirs:
        raise FileNotFoundError(f"no <class>/<sequence>/groundtruth.txt under {root} (lasot_extension_subset_path)")
    return [_lasot_style_sequence(d, "lasot_extension_subset", 0.0) for d in seq_dirs]


def _got10k_layout(root: Path, dataset: str, first_row_only: bool) -> list[Sequence]:
    """GOT-10k layout: `list.txt` (or, without it, every folder holding a groundtruth.txt) of sequence folders."""
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: folder {root} does not exist; check the dataset path setting")
    list_file = root / "list.txt"
    seq_dirs = (
        [root / name for name in read_name_list(list_file)]
        if list_file.is_file()
        else _subfolders_with(root, "groundtruth.txt")
    )
    if not seq_dirs:
        raise FileNotFoundError(f"{dataset}: no list.txt and no sequence folders under {root}")
    sequences = []
    for seq_dir in seq_dirs:
        frames = list_images(seq_dir, numeric=True)
        if first_row_only:
            sequences.append(Sequence(seq_dir.name, frames, dataset, read_box_file(seq_dir / "groundtruth.txt", 1)))
            continue
        gt = read_box_file(seq_dir / "groundtruth.txt")
        _check_lengths(frames, gt, seq_dir)
        absence, cover = read_int_flags(seq_dir / "absence.label"), read_int_flags(seq_dir / "cover.label")
        sequences.append(Sequence(seq_dir.name, frames, dataset, gt, visible=absence == 0, cover=cover))
    return sequences


def load_got10k_test(env: EnvSettings) -> list[Sequence]:
    """GOT-10k test (180 sequences; only the frame-0 box is public)."""
    return _got10k_layout(Path(env.require("got10k_path")) / "test", "got10k_test", first_row_only=True)


def load_got10k_val(env: EnvSettings) -> list[Sequence]:
    """GOT-10k val (180 sequences, full ground truth, absence and cover labels)."""
    return _got10k_layout(Path(env.require("got10k_path")) / "val", "got10k_val", first_row_only=False)


def load_synthetic(env: EnvSettings, domain: str, split: str) -> list[Sequence]:
    """Synthetic sequences written in the GOT-10k layout under `<synthetic_path>/<domain>/<split>`."""
    root = domain_dir(env.require("synthetic_path"), domain) / split
    return _got10k_layout(root, f"synthetic_{domain}_{split}", first_row_only=False)


def load_trackingnet(env: EnvSettings) -> list[Sequence]:
    """TrackingNet TEST (511 sequences): every `TEST/anno/*.txt` (first frame only), frames `TEST/frames/<seq>/`."""
    root = Path(env.require("trackingnet_path")) / "TEST"
    anno_files = sorted((root / "anno").glob("*.txt"))
    if not anno_files:
        raise FileNotFoundError(f"no annotation files {root / 'anno' / '*.txt'}; check trackingnet_path")
    return [
        Sequence(a.stem, list_images(root / "frames" / a.stem, numeric=True), "trackingnet", read_box_file(a, 1))
        for a in anno_files
    ]


def load_tnl2k(env: EnvSettings) -> list[Sequence]:
    """TNL2K test (700 sequences): every sub-folder with `groundtruth.txt` and `imgs/` (sorted by name)."""
    root = Path(env.require("tnl2k_path"))
    sequences = []
    for seq_dir in _subfolders_with(root, "groundtruth.txt"):
        frames, gt = list_images(seq_dir / "imgs", numeric=False), read_box_file(seq_dir / "groundtruth.txt")
        _check_lengths(frames, gt, seq_dir)
        sequences.append(Sequence(seq_dir.name, frames, "tnl2k", gt))
    if not sequences:
        raise FileNotFoundError(f"no <sequence>/groundtruth.txt under {root} (tnl2k_path)")
    return sequences


# OTB-100 sequences whose image folder holds more frames than were annotated: (first, last) 1-based frame
# numbers of the annotated range, as in the benchmark's configSeqs / the got10k toolkit.
_OTB_FRAME_RANGES = {
    "David": (300, 770), "Football1": (1, 74), "Freeman3": (1, 460), "Freeman4": (1, 283), "Diving": (1, 215),
}


def load_otb(env: EnvSettings) -> list[Sequence]:
    """OTB-100: `<Seq>/img/*.jpg` + `groundtruth_rect*.txt`; two-target folders become `<Seq>_1`, `<Seq>_2`.

    Empty annotation files (Human4's `groundtruth_rect.1.txt`) are not sequences and are ignored.
    """
    root = Path(env.require("otb_path"))
    sequences = []
    for folder in read_name_list(SPLITS_DIR / "otb100.txt"):
        seq_dir = root / folder
        anno_files = sorted(p for p in seq_dir.glob("groundtruth*.txt") if p.read_text(encoding="utf-8").strip())
        if not anno_files:
            raise FileNotFoundError(f"OTB sequence {folder}: no groundtruth_rect*.txt in {seq_dir}")
        frames = list_images(seq_dir / "img", numeric=True)
        first, last = _OTB_FRAME_RANGES.get(folder, (1, len(frames)))
        frames = frames[first - 1 : last]
        for k, anno in enumerate(anno_files, start=1):
            gt = read_box_file(anno)
            _check_lengths(frames, gt, anno)
            name = folder if len(anno_files) == 1 else f"{folder}_{k}"
            sequences.append(Sequence(name, frames, "otb", gt))
    return sequences


def load_uav(env: EnvSettings) -> list[Sequence]:
    """UAV123: `anno/UAV123/<seq>.txt` + frame ranges of `data_seq/UAV123/<folder>/%06d.jpg` (splits/uav123.txt).

    Frames where the target is absent have `NaN` boxes in the annotation; they are kept as NaN.
    """
    root = Path(env.require("uav_path"))
    sequences = []
    for line in read_name_list(SPLITS_DIR / "uav123.txt"):
        name, folder, first, last = line.split()
        frame_dir = root / "data_seq" / "UAV123" / folder
        frames = tuple(str(frame_dir / f"{i:06d}.jpg") for i in range(int(first), int(last) + 1))
        anno = root / "anno" / "UAV123" / f"{name}.txt"
        gt = read_box_file(anno)
        _check_lengths(frames, gt, anno)
        sequences.append(Sequence(name, frames, "uav", gt))
    return sequences


def load_nfs(env: EnvSettings) -> list[Sequence]:
    """NfS (30 fps version): `<seq>/30/<seq>.txt` (`id x1 y1 x2 y2 ...` rows) and frames `<seq>/30/<seq>/*.jpg`.

    The raw 30-fps annotation files of some sequences hold the 240-fps boxes (8x as many rows); those are
    subsampled every 8th row, and a one-row length difference is trimmed (same handling as the got10k toolkit).
    """
    root = Path(env.require("nfs_path"))
    anno_files = sorted(root.glob("*/30/*.txt"))
    if not anno_files:
        raise FileNotFoundError(f"no <seq>/30/<seq>.txt annotation files under {root} (nfs_path)")
    sequences = []
    for anno in anno_files:
        frames = list_images(anno.parent / anno.stem, numeric=True)
        rows = [line.split() for line in anno.read_text(encoding="utf-8").splitlines() if line.strip()]
        try:
            xyxy = np.asarray([[float(v) for v in row[1:5]] for row in rows], dtype=np.float64)
        except (ValueError, IndexError):
            raise ValueError(f"{anno}: expected rows 'id x1 y1 x2 y2 ...'") from None
        gt = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        if len(gt) != len(frames) and abs(len(gt) / len(frames) - 8) < 1:
            gt = gt[::8]
        if abs(len(gt) - len(frames)) == 1:
            n = min(len(gt), len(frames))
            gt, frames = gt[:n], frames[:n]
        _check_lengths(frames, gt, anno)
        sequences.append(Sequence(anno.stem, frames, "nfs", gt))
    return sequences


DATASETS: dict[str, Callable[..., list[Sequence]]] = {
    "lasot": load_lasot,
    "lasot_extension_subset": load_lasot_extension_subset,
    "got10k_test": load_got10k_test,
    "got10k_val": load_got10k_val,
    "trackingnet": load_trackingnet,
    "tnl2k": load_tnl2k,
    "otb": load_otb,
    "uav": load_uav,
    "nfs": load_nfs,
}
SYNTHETIC_PATTERN = re.compile(r"synthetic_(?P<domain>\w+)_(?P<split>[A-Za-z0-9]+)")


def dataset_names() -> list[str]:
    """Registered names (plus the `synthetic_<domain>_<split>` family)."""
    return [*DATASETS, "synthetic_<domain>_<split>"]


def get_dataset(name: str, env: EnvSettings | None = None) -> list[Sequence]:
    """All sequences of benchmark `name`, read with the path settings `env` (default: local.py)."""
    env = env_settings() if env is None else env
    synthetic = SYNTHETIC_PATTERN.fullmatch(name)
    if synthetic:
        return load_synthetic(env, synthetic["domain"], synthetic["split"])
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    return DATASETS[name](env)
