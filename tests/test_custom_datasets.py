"""Your own data (lib/datasets/custom.py): one folder in the got10k, lasot or simple layout trains (a data entry with
`format` + `root`, or a name local.py declares) and evaluates (`tracking/test.py --dataset_name my_drones`)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval_helpers import (
    make_env,
    moving_boxes,
    write_boxes,
    write_frame,
    write_local_file,
)
from test_lmdb import assert_same_dataset

from lib.config import DatasetEntry, apply_overrides, load_experiment
from lib.test.evaluation.datasets import get_dataset
from lib.train import run_training
from lib.train.admin.environment import TRAIN_FIELDS, EnvironmentSettings, env_settings
from lib.train.dataset import build_train_dataset
from lib.utils.distributed import DistInfo
from lib.utils.synthetic import SyntheticSpec, write_got10k

ROOT = Path(__file__).resolve().parents[1]


def _relayout(got10k_root: Path, out: Path, layout: str) -> None:
    """The same sequences (frames, boxes, absence) rewritten in the `simple` or `lasot` layout."""
    for seq_dir in sorted(p for p in got10k_root.iterdir() if p.is_dir()):
        gt = np.loadtxt(seq_dir / "groundtruth.txt", delimiter=",")
        absent = np.loadtxt(seq_dir / "absence.label", dtype=int).astype(bool)
        target = out / seq_dir.name if layout == "simple" else out / "drone" / f"drone-{seq_dir.name[-1]}"
        (target / "img").mkdir(parents=True)
        for frame in seq_dir.glob("*.jpg"):
            shutil.copy(frame, target / "img" / frame.name)
        if layout == "simple":
            gt[absent] = np.nan
        else:
            (target / "full_occlusion.txt").write_text(",".join(str(int(a)) for a in absent))
            (target / "out_of_view.txt").write_text(",".join("0" for _ in absent))
        write_boxes(target / "groundtruth.txt", gt)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("custom")
    write_got10k(root, "my_drones", SyntheticSpec(domain="A", num_sequences=2, frames=(10, 12), seed=5))
    (root / "my_drones" / "README.txt").write_text("a file next to the sequences is ignored\n")
    for layout in ("simple", "lasot"):
        _relayout(root / "my_drones", root / layout, layout)
    return {"got10k": root / "my_drones", "simple": root / "simple", "lasot": root / "lasot"}


def _train_env(**custom) -> EnvironmentSettings:
    env = EnvironmentSettings()
    for name in TRAIN_FIELDS:
        setattr(env, name, "")
    env.custom_datasets = custom
    return env


def _expected_boxes(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(xyxy, valid) of each sequence straight from the files: absent frames are invalid."""
    out = []
    for seq in sorted(p for p in folder.iterdir() if p.is_dir()):
        gt = np.loadtxt(seq / "groundtruth.txt", delimiter=",")
        valid = np.loadtxt(seq / "absence.label", dtype=int) == 0
        out.append((np.concatenate([gt[:, :2], gt[:, :2] + gt[:, 2:]], axis=1), valid))
    return out


@pytest.mark.parametrize("layout", ["got10k", "simple", "lasot"])
def test_a_custom_folder_trains_from_a_data_entry(folders, layout):
    dataset = build_train_dataset(DatasetEntry("my_drones", 2.0, layout, str(folders[layout])), _train_env())
    assert dataset.name == "my_drones" and dataset.num_sequences() == 2
    for k, (xyxy, valid) in enumerate(_expected_boxes(folders["got10k"])):
        track = dataset.sequence(k).tracks[0]
        first = int(np.argmax(valid))  # leading frames without the target are trimmed (upstream's cleaning)
        kept = valid[first:first + len(track.valid)]
        np.testing.assert_array_equal(track.valid, kept)
        np.testing.assert_allclose(track.boxes[kept], np.clip(xyxy[first:first + len(kept)][kept], 0, [160, 120] * 2))
        frame = dataset.read_frame(k, 0)
        assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8


def test_a_name_declared_in_local_py_trains_and_makes_pairs(folders):
    env = _train_env(my_drones={"format": "simple", "root": str(folders["simple"])})
    dataset = build_train_dataset("my_drones", env)
    assert dataset.num_sequences() == 2
    cfg = apply_overrides(load_experiment("lorat", "demo"), ["data.train=[{name: my_drones, weight: 1}]"])
    assert cfg.data.train == (DatasetEntry("my_drones", 1.0),)
    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    pairs = run_training.make_pairs(cfg, cfg.data.train, 4, 0, dist, env)
    sample = pairs[0]
    size = cfg.model.search_size
    assert sample["x"].shape == (3, size, size) and 0.0 <= sample["search_box"].min() <= sample["search_box"].max() <= 1


def test_train_py_trains_a_declared_custom_dataset_without_code(folders, tmp_path):
    made = subprocess.run([sys.executable, "tracking/create_default_local_file.py", "--workspace_dir", str(ROOT),
                           "--data_dir", str(tmp_path), "--save_dir", str(tmp_path / "output"),
                           "--train_local", str(tmp_path / "train_local.py"),
                           "--test_local", str(tmp_path / "test_local.py")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    local = tmp_path / "train_local.py"
    local.write_text(local.read_text().replace(
        "self.custom_datasets = {}", f"self.custom_datasets = {{'my_drones': {{'format': 'got10k', 'root': "
                                     f"{str(folders['got10k'])!r}}}}}"))
    code = run_training.main(["--config", "demo", "--save_dir", str(tmp_path), "--env_file", str(local), "--cpu",
                              "--set", "data.train=[{name: my_drones, weight: 1}]", "train.epochs=1",
                              "train.batch_size=4", "data.samples_per_epoch=4", "data.num_workers=0"])
    assert code == 0
    assert list((tmp_path / "checkpoints").rglob("*.pth"))


def test_custom_entries_with_half_a_spec_or_a_bad_local_py_are_errors(folders, tmp_path):
    with pytest.raises(ValueError, match="needs both 'format' and 'root'"):
        build_train_dataset(DatasetEntry("my_drones", 1.0, "got10k", None), _train_env())
    with pytest.raises(FileNotFoundError, match="custom dataset 'my_drones': folder .*nowhere does not exist"):
        build_train_dataset(DatasetEntry("my_drones", 1.0, "got10k", str(tmp_path / "nowhere")), _train_env())
    with pytest.raises(ValueError, match="has format 'mot'; use one of: got10k, lasot, simple, vot"):
        build_train_dataset("my_drones", _train_env(my_drones={"format": "mot", "root": "/x"}))
    with pytest.raises(ValueError, match="a registered dataset name; rename it"):
        build_train_dataset("got10k_val", _train_env(got10k_val={"format": "got10k", "root": str(folders["got10k"])}))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no sequences in .*empty for format 'simple'"):
        build_train_dataset(DatasetEntry("mine", 1.0, "simple", str(empty)), _train_env())


def test_got_dataset_reads_a_declared_folder_for_evaluation(folders, tmp_path):
    env = make_env(tmp_path)
    env.custom_datasets = {"my_drones": {"format": "lasot", "root": str(folders["lasot"])}}
    sequences = get_dataset("my_drones", env)
    assert [s.name for s in sequences] == ["drone-1", "drone-2"] and {s.dataset for s in sequences} == {"my_drones"}
    for seq, got_seq in zip(sequences, sorted(p for p in folders["got10k"].iterdir() if p.is_dir())):
        np.testing.assert_allclose(seq.ground_truth_rect, np.loadtxt(got_seq / "groundtruth.txt", delimiter=","))
        np.testing.assert_array_equal(seq.visible, np.loadtxt(got_seq / "absence.label", dtype=int) == 0)
        assert seq.file_offset == 0.0 and Path(seq.frames[0]).is_file()


def _static_iou(w: float, h: float, dx: float, dy: float) -> float:
    """IoU of a w x h box with itself shifted by (dx, dy) (hand formula)."""
    inter = max(w - dx, 0) * max(h - dy, 0)
    return inter / (2 * w * h - inter)


def test_test_py_and_analysis_run_a_custom_dataset_by_name(tmp_path):
    data = tmp_path / "drones"
    lengths = {"d1": 5, "d2": 4}
    for k, (name, n) in enumerate(lengths.items()):
        for i in range(n):
            write_frame(data / name / "img" / f"frame{i}.png", value=30 * i)
        write_boxes(data / name / "groundtruth.txt", moving_boxes(n, start=(3.0 + k, 4.0, 9.0 + k, 7.0)))
    local = tmp_path / "local.py"
    write_local_file(local, make_env(tmp_path))
    local.write_text(local.read_text().replace(
        "    return s", f"    s.custom_datasets = {{'drones': {{'format': 'simple', 'root': {str(data)!r}}}}}\n    return s"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args, "--env_file", str(local)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=False)

    tracked = run("tracking/test.py", "static", "none", "--dataset_name", "drones")
    assert tracked.returncode == 0, tracked.stderr
    result = np.loadtxt(tmp_path / "out/test/tracking_results/static/none/drones/d2.txt", delimiter=",")
    np.testing.assert_allclose(result, np.tile([4.0, 4.0, 10.0, 7.0], (4, 1)))  # the static tracker keeps box 0
    scores = tmp_path / "scores.json"
    analysed = run("tracking/analysis_results.py", "--script", "static", "--config", "none", "--dataset", "drones",
                   "--json", str(scores))
    assert analysed.returncode == 0, analysed.stderr
    thresholds = np.arange(21) / 20
    auc = np.mean([np.mean([(np.array([_static_iou(9.0 + k, 7.0, i, 0.5 * i) for i in range(n)]) > t).mean()
                            for t in thresholds]) for k, n in enumerate(lengths.values())])
    np.testing.assert_allclose(json.loads(scores.read_text())["static/none"]["AUC"], 100 * auc, rtol=1e-9)


def test_make_pairs_reads_a_data_entry_with_its_own_folder_and_format(folders):
    """`data.train: [{name, format, root}]` trains from that folder without any local.py declaration."""
    entry = f"{{name: my_drones, format: simple, root: {folders['simple']}, weight: 1}}"
    cfg = apply_overrides(load_experiment("lorat", "demo"), [f"data.train=[{entry}]"])
    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    pairs = run_training.make_pairs(cfg, cfg.data.train, 4, 0, dist, _train_env())
    assert [d.num_sequences() for d in pairs.sampler.datasets] == [2]
    assert pairs[0]["x"].shape == (3, cfg.model.search_size, cfg.model.search_size)


def _write_train_local(path: Path, custom: dict) -> None:
    """A training local.py with every path field empty and the given custom_datasets."""
    lines = ["class EnvironmentSettings:", "    def __init__(self):"]
    lines += [f"        self.{name} = ''" for name in TRAIN_FIELDS]
    lines.append(f"        self.custom_datasets = {custom!r}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("layout", ["got10k", "lasot"])
def test_a_custom_dataset_trains_from_its_lmdb(folders, tmp_path, run_cli, layout):
    root, packed = tmp_path / "my_drones", tmp_path / "my_drones_lmdb"
    shutil.copytree(folders[layout], root)
    local = tmp_path / "train_local.py"
    _write_train_local(local, {"my_drones": {"format": layout, "root": str(root), "lmdb": str(packed)}})
    result = run_cli("build_lmdb", "--custom", "my_drones", "--local", str(local))
    assert result.returncode == 0, result.stderr
    assert f"into {packed}" in result.stdout and (packed / "data.mdb").is_file()
    shutil.rmtree(root)  # the LMDB alone must do
    env = env_settings(str(local))
    from_lmdb = build_train_dataset("my_drones", env, use_lmdb=True)
    assert from_lmdb.frame_location(0, 0).startswith(f"{packed}[")  # an LMDB key, not a file
    from_folder = build_train_dataset(DatasetEntry("my_drones", 1.0, layout, str(folders[layout])), _train_env())
    assert_same_dataset(from_folder, from_lmdb)
    # The same LMDB named by an experiment's data entry (`lmdb` beside `root`).
    cfg = apply_overrides(load_experiment("lorat", "demo"), [
        f"data.train=[{{name: mine, format: {layout}, root: {root}, lmdb: {packed}, weight: 1}}]"])
    assert cfg.data.train == (DatasetEntry("mine", 1.0, layout, str(root), str(packed)),)
    assert_same_dataset(from_folder, build_train_dataset(cfg.data.train[0], _train_env(), use_lmdb=True))


def test_use_lmdb_without_a_declared_lmdb_is_a_clear_error(folders, tmp_path, run_cli):
    env = _train_env(my_drones={"format": "got10k", "root": str(folders["got10k"])})
    with pytest.raises(ValueError, match=r"custom dataset 'my_drones' declares no LMDB, and data.use_lmdb is set: "
                                         r"add 'lmdb'.*build_lmdb.py --custom my_drones"):
        build_train_dataset("my_drones", env, use_lmdb=True)
    with pytest.raises(ValueError, match="custom dataset 'mine' declares no LMDB"):
        build_train_dataset(DatasetEntry("mine", 1.0, "got10k", str(folders["got10k"])), _train_env(), use_lmdb=True)
    with pytest.raises(ValueError, match="needs both 'format' and 'root'"):
        build_train_dataset(DatasetEntry("mine", 1.0, lmdb=str(tmp_path)), _train_env())
    with pytest.raises(FileNotFoundError, match=r"nowhere_lmdb does not exist or is not an LMDB.*--custom NAME"):
        entry = DatasetEntry("mine", 1.0, "got10k", str(folders["got10k"]), str(tmp_path / "nowhere_lmdb"))
        build_train_dataset(entry, _train_env(), use_lmdb=True)
    with pytest.raises(ValueError, match="non-empty string 'lmdb'"):
        build_train_dataset("x", _train_env(x={"format": "got10k", "root": "/r", "lmdb": ""}))
    with pytest.raises(ValueError, match=r"and optionally 'lmdb'"):
        build_train_dataset("x", _train_env(x={"format": "got10k", "root": "/r", "lmbd": "/l"}))

    local = tmp_path / "train_local.py"
    _write_train_local(local, {"my_drones": {"format": "got10k", "root": str(folders["got10k"])}})
    result = run_cli("build_lmdb", "--custom", "my_drones", "--local", str(local))
    assert result.returncode != 0 and "pass --out or set 'lmdb'" in result.stderr
    result = run_cli("build_lmdb", "--custom", "drones", "--local", str(local))
    assert result.returncode != 0 and "declares no custom dataset 'drones'" in result.stderr
    # Evaluation reads the folder and accepts (ignores) a declared lmdb.
    test_env = make_env(tmp_path)
    test_env.custom_datasets = {"my_drones": {"format": "got10k", "root": str(folders["got10k"]), "lmdb": "/x"}}
    names = sorted(p.name for p in folders["got10k"].iterdir() if p.is_dir())
    assert [s.name for s in get_dataset("my_drones", test_env)] == names and len(names) == 2
