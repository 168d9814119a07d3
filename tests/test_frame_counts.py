"""Frames and annotation rows must match: a sequence whose annotation files were all cut to the same length (or
whose frames are missing) is an error naming the sequence and both counts, in training and testing alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lib.test.evaluation.datasets import get_dataset
from lib.train.dataset import GOT10k, LaSOT, TrackingNet, build_train_dataset
from lib.utils.lmdb_store import FolderStore, LmdbStore, pack_folder_to_lmdb
from test_eval_helpers import make_env, make_got10k_split
from tests.test_datasets import write_env
from tests.test_datasets_fixtures import make_got10k, make_lasot, make_trackingnet


def cut_lines(path: Path, rows: int) -> None:
    """Keep the first `rows` lines of a one-value-or-box-per-line file."""
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:rows]))


def cut_got10k_annotation(seq_dir: Path, rows: int) -> None:
    for name in ("groundtruth.txt", "absence.label", "cover.label"):
        cut_lines(seq_dir / name, rows)


def cut_lasot_annotation(seq_dir: Path, rows: int) -> None:
    cut_lines(seq_dir / "groundtruth.txt", rows)
    for name in ("full_occlusion.txt", "out_of_view.txt"):
        flags = (seq_dir / name).read_text().strip().split(",")[:rows]
        (seq_dir / name).write_text(",".join(flags) + "\n")


def test_got10k_train_annotation_cut_short_is_an_error(tmp_path):
    make_got10k(str(tmp_path), frames=6)
    cut_got10k_annotation(tmp_path / "train" / "GOT-10k_Train_000002", 4)
    with pytest.raises(ValueError, match=r"GOT-10k_Train_000002: groundtruth.txt annotates 4 frames but .* holds 6 "):
        GOT10k(FolderStore(tmp_path), "g", "train")


def test_got10k_train_missing_frames_in_an_lmdb_are_an_error(tmp_path):
    make_got10k(str(tmp_path / "folder"), frames=5)
    (tmp_path / "folder" / "train" / "GOT-10k_Train_000001" / "00000005.jpg").unlink()
    pack_folder_to_lmdb(str(tmp_path / "folder"), str(tmp_path / "lmdb"))
    with pytest.raises(ValueError, match=r"lmdb\[train/GOT-10k_Train_000001\]: .* annotates 5 frames .* holds 4 "):
        GOT10k(LmdbStore(tmp_path / "lmdb"), "g", "train")


def test_lasot_train_annotation_cut_short_is_an_error(tmp_path):
    make_lasot(str(tmp_path))
    cut_lasot_annotation(tmp_path / "airplane" / "airplane-2", 3)
    with pytest.raises(ValueError, match=r"airplane/airplane-2: groundtruth.txt annotates 3 frames but img/ holds 5 "):
        LaSOT(FolderStore(tmp_path), sequence_names=["airplane-2", "zebra-1"])


def test_trackingnet_train_annotation_cut_short_is_an_error(tmp_path):
    make_trackingnet(str(tmp_path))
    cut_lines(tmp_path / "TRAIN_1" / "anno" / "vid_c.txt", 2)
    with pytest.raises(ValueError, match=r"TRAIN_1/frames/vid_c: .*vid_c.txt annotates 2 frames but .* holds 3 "):
        TrackingNet(FolderStore(tmp_path), chunks=("TRAIN_0", "TRAIN_1"))


def test_synthetic_training_set_with_extra_frames_is_an_error(tmp_path):
    data = tmp_path / "data"
    make_got10k(str(data / "synthetic" / "a"), "val", ("s1",), frames=3)
    cut_got10k_annotation(data / "synthetic" / "a" / "val" / "s1", 2)
    with pytest.raises(ValueError, match=r"s1: groundtruth.txt annotates 2 frames but the folder holds 3 images"):
        build_train_dataset("synthetic_a_val", write_env(tmp_path, data))


def write_lasot_test_sequence(seq_dir: Path, boxes: int, frames: int) -> None:
    seq_dir.mkdir(parents=True)
    (seq_dir / "groundtruth.txt").write_text("5,6,7,8\n" * boxes)
    (seq_dir / "full_occlusion.txt").write_text(",".join(["0"] * boxes) + "\n")
    (seq_dir / "out_of_view.txt").write_text(",".join(["0"] * boxes) + "\n")
    (seq_dir / "img").mkdir()
    for i in range(1, frames + 1):
        (seq_dir / "img" / f"{i:08d}.jpg").touch()


@pytest.mark.parametrize("boxes, frames", [(3, 5), (5, 3)])
def test_lasot_extension_frames_and_boxes_must_match(tmp_path, boxes, frames):
    root = tmp_path / "ext"
    write_lasot_test_sequence(root / "atv" / "atv-1", 4, 4)
    write_lasot_test_sequence(root / "atv" / "atv-2", boxes, frames)
    env = make_env(tmp_path, lasot_extension_subset_path=str(root))
    with pytest.raises(ValueError, match=rf"atv/atv-2: groundtruth.txt annotates {boxes} frames but img/ holds {frames} "):
        get_dataset("lasot_extension_subset", env)


def test_lasot_test_set_frames_and_boxes_must_match(tmp_path):
    root = tmp_path / "lasot"
    write_lasot_test_sequence(root / "airplane" / "airplane-1", 2, 6)
    with pytest.raises(ValueError, match=r"airplane-1: groundtruth.txt annotates 2 frames but img/ holds 6 images"):
        get_dataset("lasot", make_env(tmp_path, lasot_path=str(root)))


def test_got10k_val_annotation_cut_short_is_an_error(tmp_path):
    root = tmp_path / "got10k"
    make_got10k_split(root, "val", {"GOT-10k_Val_000001": 4, "GOT-10k_Val_000002": 5})
    cut_got10k_annotation(root / "val" / "GOT-10k_Val_000002", 3)
    with pytest.raises(ValueError, match=r"GOT-10k_Val_000002: groundtruth.txt annotates 3 frames but .* holds 5 "):
        get_dataset("got10k_val", make_env(tmp_path, got10k_path=str(root)))


def test_first_row_only_test_sets_are_not_checked_against_their_frames(tmp_path):
    # GOT-10k test and TrackingNet test publish the frame-0 box only: a documented fact, not a cut annotation.
    root = tmp_path / "got10k"
    make_got10k_split(root, "test", {"GOT-10k_Test_000001": 5}, full_gt=False)
    (sequence,) = get_dataset("got10k_test", make_env(tmp_path, got10k_path=str(root)))
    assert sequence.num_frames == 5 and sequence.ground_truth_rect.shape == (1, 4)
    assert sequence.gt_lines.tolist() == [1]
    np.testing.assert_array_equal(sequence.ground_truth_rect[0], np.loadtxt(
        root / "test" / "GOT-10k_Test_000001" / "groundtruth.txt", delimiter=",", ndmin=2)[0])
