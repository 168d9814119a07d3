"""Test benchmarks read from their native on-disk layouts, behind one registry: `get_dataset(name, env)`.

The LaSOT, GOT-10k and TrackingNet layouts are parsed by the readers the training datasets use (lib/datasets).
Coordinate conventions follow the official LoRAT evaluation (upstream trackit/LoRAT: config/_dataset/test.yaml and
its LaSOT / LaSOT_Extension / VastTrack loaders): LaSOT and VastTrack boxes are 1-based in the files and are shifted
by -1 on load (result files get the +1 back, `Sequence.file_offset`); LaSOT-extension, GOT-10k, TrackingNet, TNL2K,
OTB, UAV123, NfS and TC128 are used as they are in the files. Visibility: LaSOT / LaSOT-ext `visible = not
full_occlusion and not out_of_view`; VastTrack `visible = the row is not all zeros`; GOT-10k-layout sets (GOT-10k
val, synthetic) `visible = absence == 0` plus their `cover` labels.
Your own datasets are declared by name in local.py's `custom_datasets` (lib/datasets/custom.py).
Every sequence must have one frame per annotated box (an error names the sequence and both counts), except the
documented dataset facts below: GOT-10k test and TrackingNet test publish the first box only, OTB and UAV123 use
frame ranges of their image folders (TC128 too), NfS subsamples 240-fps annotations and trims a one-row difference.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lib.datasets import got10k, lasot, trackingnet
from lib.datasets.custom import CustomDataset, read_custom
from lib.datasets.frames import check_frame_count, image_names
from lib.datasets.synthetic import (
    NAME_FORM,
    domain_dir,
    is_synthetic_name,
    parse_synthetic_name,
)
from lib.datasets.text import (
    BoxFile,
    read_box_file,
    read_boxes,
    read_name_list,
    row_line_numbers,
)
from lib.test.analysis.metrics import register_custom_benchmark
from lib.test.evaluation.data import Sequence
from lib.test.evaluation.environment import EnvSettings, env_settings
from lib.utils.lmdb_store import FolderStore

__all__ = ["DATASETS", "SPLITS_DIR", "dataset_names", "get_dataset", "list_images", "read_box_file", "read_name_list"]

SPLITS_DIR = Path(__file__).resolve().parent / "splits"


def list_images(folder: Path, numeric: bool) -> tuple[str, ...]:
    """Paths of the image files of `folder`, sorted by the number in their name (`numeric`) or by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"frame folder {folder} does not exist; check the dataset folder")
    return tuple(str(folder / name) for name in image_names(FolderStore(folder), "", numeric))


def _subfolders_with(root: Path, filename: str) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / filename).is_file())


def _sequence(name: str, frames: tuple[str, ...], dataset: str, gt: BoxFile, shift: float = 0.0,
              visible: np.ndarray | None = None, cover: np.ndarray | None = None) -> Sequence:
    """A Sequence whose ground truth remembers its file and lines; `shift` is subtracted from x, y."""
    boxes = gt.xywh.copy()
    boxes[:, :2] -= shift
    return Sequence(name, frames, dataset, boxes, visible=visible, cover=cover, file_offset=shift,
                    gt_source=gt.source, gt_lines=gt.lines)


# ----------------------------------------------------------------------------------------------- readers
def _lasot_style_sequence(store: FolderStore, location: str, dataset: str, shift: float) -> Sequence:
    """A LaSOT-layout sequence; `shift` is subtracted from x, y (1 for LaSOT, 0 for LaSOT-ext)."""
    if not store.exists(location):
        raise FileNotFoundError(
            f"{dataset} sequence folder {store.describe(location)} does not exist; the dataset is incomplete"
        )
    annotation = lasot.read_sequence(store, location)
    frames = tuple(store.describe(lasot.frame_relpath(location, i)) for i in range(len(annotation.boxes)))
    return _sequence(location.rsplit("/", 1)[-1], frames, dataset, annotation.boxes, shift, annotation.visible)


def load_lasot(env: EnvSettings) -> list[Sequence]:
    """LaSOT test set: the 280 sequences of the toolkit's testing_set.txt (splits/lasot_test.txt)."""
    store = FolderStore(env.require("lasot_path"))
    names = read_name_list(SPLITS_DIR / "lasot_test.txt")
    return [_lasot_style_sequence(store, lasot.sequence_folder(name), "lasot", 1.0) for name in names]


def load_lasot_extension_subset(env: EnvSettings) -> list[Sequence]:
    """LaSOT extension (150 sequences, 15 classes): every `<class>/<seq>` folder; boxes NOT shifted (upstream)."""
    root = Path(env.require("lasot_extension_subset_path"))
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    seq_dirs = [d for cls in classes for d in _subfolders_with(cls, "groundtruth.txt")]
    if not seq_dirs:
        raise FileNotFoundError(f"no <class>/<sequence>/groundtruth.txt under {root} (lasot_extension_subset_path)")
    store = FolderStore(root)
    return [_lasot_style_sequence(store, f"{d.parent.name}/{d.name}", "lasot_extension_subset", 0.0) for d in seq_dirs]


def _got10k_layout(root: Path, dataset: str, first_row_only: bool) -> list[Sequence]:
    """GOT-10k layout: `list.txt` (or, without it, every folder holding a groundtruth.txt) of sequence folders."""
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: folder {root} does not exist; check the dataset path setting")
    store = FolderStore(root)
    names = (
        read_name_list(root / "list.txt")
        if (root / "list.txt").is_file()
        else [d.name for d in _subfolders_with(root, "groundtruth.txt")]
    )
    if not names:
        raise FileNotFoundError(f"{dataset}: no list.txt and no sequence folders under {root}")
    sequences = []
    for name in names:
        annotation = got10k.read_sequence(store, name, first_row_only=first_row_only, require_cover=True)
        frames = tuple(store.describe(key) for key in annotation.frames)
        visible = None if annotation.absence is None else annotation.absence == 0
        sequences.append(_sequence(name, frames, dataset, annotation.boxes, visible=visible, cover=annotation.cover))
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
    store = FolderStore(env.require("trackingnet_path"))
    videos = trackingnet.video_names(store, "TEST") if store.exists("TEST/anno") else []
    if not videos:
        raise FileNotFoundError(f"no annotation files {store.describe('TEST/anno/*.txt')}; check trackingnet_path")
    sequences = []
    for video in videos:
        annotation = trackingnet.read_sequence(store, "TEST", video, first_row_only=True)
        frames = tuple(store.describe(key) for key in annotation.frames)
        sequences.append(_sequence(video, frames, "trackingnet", annotation.boxes))
    return sequences


def load_tnl2k(env: EnvSettings) -> list[Sequence]:
    """TNL2K test (700 sequences): every sub-folder with `groundtruth.txt` and `imgs/` (sorted by name)."""
    root = Path(env.require("tnl2k_path"))
    store = FolderStore(root)
    sequences = []
    for seq_dir in _subfolders_with(root, "groundtruth.txt"):
        frames = list_images(seq_dir / "imgs", numeric=False)
        gt = read_boxes(store, f"{seq_dir.name}/groundtruth.txt")
        check_frame_count(str(seq_dir), len(gt), "groundtruth.txt", len(frames), "imgs/")
        sequences.append(_sequence(seq_dir.name, frames, "tnl2k", gt))
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
    store = FolderStore(root)
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
            gt = read_boxes(store, f"{folder}/{anno.name}")
            check_frame_count(folder, len(gt), anno.name, len(frames), f"the annotated range {first}..{last} of img/")
            name = folder if len(anno_files) == 1 else f"{folder}_{k}"
            sequences.append(_sequence(name, frames, "otb", gt))
    return sequences


def load_uav(env: EnvSettings) -> list[Sequence]:
    """UAV123: `anno/UAV123/<seq>.txt` + frame ranges of `data_seq/UAV123/<folder>/%06d.jpg` (splits/uav123.txt).

    Frames where the target is absent have `NaN` boxes in the annotation; they are kept as NaN.
    """
    root = Path(env.require("uav_path"))
    store = FolderStore(root)
    sequences = []
    for line in read_name_list(SPLITS_DIR / "uav123.txt"):
        name, folder, first, last = line.split()
        frame_dir = root / "data_seq" / "UAV123" / folder
        frames = tuple(str(frame_dir / f"{i:06d}.jpg") for i in range(int(first), int(last) + 1))
        gt = read_boxes(store, f"anno/UAV123/{name}.txt")
        check_frame_count(name, len(gt), gt.source, len(frames), f"the range {first}..{last} of {frame_dir}")
        sequences.append(_sequence(name, frames, "uav", gt))
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
        text = anno.read_text(encoding="utf-8")
        rows = [line.split() for line in text.splitlines() if line.strip()]
        try:
            xyxy = np.asarray([[float(v) for v in row[1:5]] for row in rows], dtype=np.float64)
        except (ValueError, IndexError):
            raise ValueError(f"{anno}: expected rows 'id x1 y1 x2 y2 ...'") from None
        gt = BoxFile(np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1), row_line_numbers(text), str(anno))
        if len(gt) != len(frames) and abs(len(gt) / len(frames) - 8) < 1:
            gt = gt.take(slice(None, None, 8))
        if abs(len(gt) - len(frames)) == 1:
            n = min(len(gt), len(frames))
            gt, frames = gt.take(slice(n)), frames[:n]
        check_frame_count(anno.stem, len(gt), str(anno), len(frames), str(anno.parent / anno.stem))
        sequences.append(_sequence(anno.stem, frames, "nfs", gt))
    return sequences


def load_tc128(env: EnvSettings) -> list[Sequence]:
    """TempleColor-128: every `<Seq>/` folder with `<Seq>_gt.txt` (x, y, w, h as in the file, like OTB) and
    `<Seq>_frames.txt` ("first,last", 1-based numbers of the annotated frames `img/%04d.jpg`; some folders name that
    file in lower case), as upstream trackit/LoRAT's TempleColor loader reads them."""
    root = Path(env.require("tc128_path"))
    store = FolderStore(root)
    sequences = []
    for seq_dir in sorted(p for p in root.iterdir() if (p / f"{p.name}_gt.txt").is_file()):
        name = seq_dir.name
        range_file = next((seq_dir / f"{stem}_frames.txt" for stem in (name, name.lower())
                           if (seq_dir / f"{stem}_frames.txt").is_file()), None)
        if range_file is None:
            raise FileNotFoundError(f"TC128 sequence {seq_dir}: no {name}_frames.txt; re-extract the dataset")
        fields = range_file.read_text(encoding="utf-8").strip().split(",")
        if len(fields) != 2 or not all(f.strip().isdigit() for f in fields):
            raise ValueError(f"{range_file}:1: expected 'first,last' frame numbers, got {range_file.read_text()!r}")
        first, last = (int(f) for f in fields)
        frames = tuple(str(seq_dir / "img" / f"{i:04d}.jpg") for i in range(first, last + 1))
        missing = [f for f in (frames[0], frames[-1]) if not Path(f).is_file()] if frames else ["(empty range)"]
        if missing:
            raise FileNotFoundError(f"TC128 sequence {name}: {range_file.name} names frames {first}..{last} but "
                                    f"{missing[0]} does not exist; re-extract the dataset")
        gt = read_boxes(store, f"{name}/{name}_gt.txt")
        check_frame_count(name, len(gt), gt.source, len(frames), f"the range {first}..{last} of img/")
        sequences.append(_sequence(name, frames, "tc128", gt))
    if not sequences:
        raise FileNotFoundError(f"no <Seq>/<Seq>_gt.txt under {root} (tc128_path)")
    return sequences


def load_vasttrack(env: EnvSettings) -> list[Sequence]:
    """VastTrack test: `<category>/<sequence>/{Groundtruth.txt (or groundtruth.txt), imgs/%05d.jpg}` for every
    category folder. Boxes are 1-based in the files and shifted by -1 on load; an all-zero row marks a frame without
    the target (not visible), as upstream trackit/LoRAT's VastTrack loader reads them."""
    root = Path(env.require("vasttrack_path"))
    store = FolderStore(root)
    sequences = []
    for category in sorted(p for p in root.iterdir() if p.is_dir()):
        for seq_dir in sorted(p for p in category.iterdir() if p.is_dir()):
            anno = next((f for f in ("Groundtruth.txt", "groundtruth.txt") if (seq_dir / f).is_file()), None)
            if anno is None:
                continue
            gt = read_boxes(store, f"{category.name}/{seq_dir.name}/{anno}")
            frames = list_images(seq_dir / "imgs", numeric=True)
            check_frame_count(seq_dir.name, len(gt), gt.source, len(frames), str(seq_dir / "imgs"))
            visible = gt.xywh.sum(axis=1) > 0
            sequences.append(_sequence(seq_dir.name, frames, "vasttrack", gt, shift=1.0, visible=visible))
    if not sequences:
        raise FileNotFoundError(f"no <category>/<sequence>/Groundtruth.txt under {root} (vasttrack_path)")
    return sequences


def load_custom(name: str, custom: CustomDataset) -> list[Sequence]:
    """Your own dataset folder (local.py's `custom_datasets`), in its files' coordinates; scored with ope."""
    root = Path(custom.root)
    if not root.is_dir():
        raise FileNotFoundError(f"custom dataset {name!r}: folder {root} does not exist; fix its 'root' in local.py")
    store = FolderStore(root)
    sequences = [
        _sequence(seq.name, tuple(store.describe(f) for f in seq.frames), name, seq.boxes, visible=seq.visible,
                  cover=seq.cover)
        for seq in read_custom(custom.format, store, name)
    ]
    register_custom_benchmark(name)
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
    "tc128": load_tc128,
    "vasttrack": load_vasttrack,
}


def dataset_names() -> list[str]:
    """Registered names (plus the `synthetic_<domain>_<split>` family)."""
    return [*DATASETS, NAME_FORM]


def get_dataset(name: str, env: EnvSettings | None = None) -> list[Sequence]:
    """All sequences of benchmark `name`, read with the path settings `env` (default: local.py)."""
    env = env_settings() if env is None else env
    custom = env.custom_dataset(name)
    if custom is not None:
        if name in DATASETS or is_synthetic_name(name):
            raise ValueError(f"{env.source}: custom_datasets declares {name!r}, a benchmark's name; rename it")
        return load_custom(name, custom)
    if is_synthetic_name(name):
        synthetic = parse_synthetic_name(name)
        return load_synthetic(env, synthetic.domain, synthetic.split)
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}, or a folder of your own "
                       f"declared in {env.source}'s custom_datasets")
    return DATASETS[name](env)
