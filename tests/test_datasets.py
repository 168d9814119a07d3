from __future__ import annotations

import os

import numpy as np
import pytest

import lib.train.dataset.got10k as got10k_module
from lib.train.admin.environment import env_settings
from lib.train.dataset import COCO, GOT10k, LaSOT, TrackingNet, Track, build_train_dataset
from lib.datasets.text import parse_int_flags, parse_number_rows
from lib.train.dataset.base import clean_sequence
from lib.train.dataset.specs import read_split_list
from lib.utils.lmdb_store import FolderStore
from tests.test_datasets_fixtures import (
    LASOT_NAMES, frame_value, make_coco, make_got10k, make_lasot, make_trackingnet,
)


def assert_frame(dataset, seq, frame, value):
    image = dataset.read_frame(seq, frame)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert abs(float(image.mean()) - value) < 3


def test_shipped_split_lists():
    lasot = read_split_list("lasot_train_split.txt")
    assert len(lasot) == 1120 and len(set(lasot)) == 1120
    classes = {name.rsplit("-", 1)[0] for name in lasot}
    assert len(classes) == 70  # protocol II: 70 classes x 16 training videos
    assert all(sum(n.rsplit("-", 1)[0] == c for n in lasot) == 16 for c in classes)
    vot = [int(v) for v in read_split_list("got10k_vot_train_split.txt")]
    assert len(vot) == 7086 and len(set(vot)) == 7086 and min(vot) >= 0 and max(vot) < 9335


def test_clean_sequence_hand_worked():
    raw = [
        Track(np.array([[-5, -5, 5, 5], [1, 1, 2, 2], [70, 10, 80, 20], [10, 10, 90, 60]], float),
              np.array([False, True, True, True])),
        Track(np.array([[0, 0, 0, 5]] * 4, float), np.ones(4, bool)),  # never positive area -> dropped
    ]
    sequence, first = clean_sequence("s", raw, (64, 48))
    assert first == 1 and sequence.frame_count == 3 and len(sequence.tracks) == 1
    track = sequence.tracks[0]
    np.testing.assert_array_equal(track.valid, [True, False, True])  # [70..80] lies right of the image
    np.testing.assert_array_equal(track.boxes[0], [1, 1, 2, 2])
    np.testing.assert_array_equal(track.boxes[2], [10, 10, 64, 48])
    assert clean_sequence("empty", [raw[1]], (64, 48)) is None


def test_lasot(tmp_path):
    make_lasot(str(tmp_path))
    ds = LaSOT(FolderStore(tmp_path), sequence_names=LASOT_NAMES)
    assert [ds.sequence(i).name for i in range(ds.num_sequences())] == ["airplane-2", "airplane-10", "zebra-1"]
    a2, a10, z1 = (ds.sequence(i) for i in range(3))
    # airplane-10: 1-based -> 0-based, oov frame 0 and zero-width frame 4 trimmed, occluded frame 2 invalid.
    assert a10.frame_count == 3
    np.testing.assert_array_equal(a10.tracks[0].valid, [True, False, True])
    np.testing.assert_array_equal(a10.tracks[0].boxes[0], [10, 5, 30, 15])
    np.testing.assert_array_equal(a10.tracks[0].boxes[2], [0, 0, 10, 10])  # [-10,-10,10,10] clipped
    assert_frame(ds, 1, 0, frame_value(1))  # trimmed sequence frame 0 = file 00000002.jpg
    assert_frame(ds, 1, 2, frame_value(3))
    np.testing.assert_array_equal(a2.tracks[0].valid, [True, False, True, True, True])  # box outside the image
    np.testing.assert_array_equal(z1.tracks[0].boxes, [[4, 4, 14, 14]] * 3)
    with pytest.raises(IndexError):
        ds.read_frame(1, 3)


def test_lasot_full_split_missing_sequence_names_the_file(tmp_path):
    make_lasot(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"airplane/airplane-3/groundtruth.txt does not exist"):
        LaSOT(FolderStore(tmp_path))


def test_got10k_splits(tmp_path, monkeypatch):
    make_got10k(str(tmp_path))
    make_got10k(str(tmp_path), "val", ("GOT-10k_Val_000001",), frames=3)
    store = FolderStore(tmp_path)
    full = GOT10k(store, "got10k_train_full", "train")
    assert full.num_sequences() == 2
    seq = full.sequence(0)
    assert seq.name == "GOT-10k_Train_000001" and seq.frame_count == 3  # absent last frame trimmed
    np.testing.assert_allclose(seq.tracks[0].boxes, [[2.5, 3.0, 12.75, 11.0]] * 3)
    np.testing.assert_array_equal(seq.tracks[0].cover, [5, 6, 7])
    assert_frame(full, 1, 2, frame_value(2))
    val = GOT10k(store, "got10k_val", "val")
    assert [val.sequence(0).name, val.sequence(0).frame_count] == ["GOT-10k_Val_000001", 2]
    monkeypatch.setattr(got10k_module, "read_split_list", lambda name: ["1"])
    vot = GOT10k(store, "got10k_vottrain", "train", "got10k_vot_train_split.txt")
    assert [vot.sequence(i).name for i in range(vot.num_sequences())] == ["GOT-10k_Train_000002"]


def test_got10k_vottrain_needs_the_full_list(tmp_path):
    make_got10k(str(tmp_path))
    with pytest.raises(ValueError, match=r"list.txt lists 2 sequences"):
        GOT10k(FolderStore(tmp_path), "got10k_vottrain", "train", "got10k_vot_train_split.txt")


def test_trackingnet(tmp_path):
    make_trackingnet(str(tmp_path))
    ds = TrackingNet(FolderStore(tmp_path), chunks=("TRAIN_0", "TRAIN_1"))
    assert [ds.sequence(i).name for i in range(3)] == ["vid_a", "vid_b", "vid_c"]
    track = ds.sequence(2).tracks[0]
    np.testing.assert_allclose(track.boxes, [[1.5, 2.5, 11.5, 14.5], [60, 40, 64, 48], [3, 4, 8, 10]])
    assert track.valid.all()
    assert_frame(ds, 2, 0, frame_value(0))  # 0-based unpadded 0.jpg
    assert_frame(ds, 2, 2, frame_value(2))
    with pytest.raises(FileNotFoundError, match="TRAIN_2"):
        TrackingNet(FolderStore(tmp_path))


def test_coco(tmp_path):
    make_coco(str(tmp_path))
    ds = COCO(FolderStore(tmp_path))
    # image 3 (first annotated), then 7; 5 has only a crowd object, 9 only a zero-width box.
    assert [ds.sequence(i).name for i in range(ds.num_sequences())] == ["000000000003.jpg", "000000000007.jpg"]
    tracks = ds.sequence(0).tracks
    assert len(tracks) == 2 and ds.sequence(0).frame_count == 1
    np.testing.assert_array_equal(tracks[0].boxes, [[1, 2, 11, 22]])
    np.testing.assert_array_equal(tracks[1].boxes, [[20, 5, 24, 11]])
    np.testing.assert_array_equal(ds.sequence(1).tracks[0].boxes, [[50, 40, 64, 48]])
    assert_frame(ds, 0, 0, frame_value(1))
    assert_frame(ds, 1, 0, frame_value(0))


def test_malformed_annotation_names_file_and_line(tmp_path):
    make_got10k(str(tmp_path))
    gt = tmp_path / "train" / "GOT-10k_Train_000002" / "groundtruth.txt"
    gt.write_text("1,2,3,4\n1,2,3,4\n1,2,x,4\n1,2,3,4\n")
    with pytest.raises(ValueError, match=rf"{gt}:3: expected 4 comma-separated numbers"):
        GOT10k(FolderStore(tmp_path), "t", "train")
    gt.write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(ValueError, match=rf"{gt}:2:"):
        GOT10k(FolderStore(tmp_path), "t", "train")


def test_label_errors(tmp_path):
    make_got10k(str(tmp_path))
    label = tmp_path / "train" / "GOT-10k_Train_000001" / "absence.label"
    label.write_text("0\n0\n")
    with pytest.raises(ValueError, match=r"absence.label has 2 labels but .*groundtruth.txt has 4 boxes"):
        GOT10k(FolderStore(tmp_path), "t", "train")
    label.write_text("0\n2\n0\n0\n")
    with pytest.raises(ValueError, match=rf"{label}:2: expected integers in \[0, 1\]"):
        GOT10k(FolderStore(tmp_path), "t", "train")
    os.remove(label)
    with pytest.raises(FileNotFoundError, match=str(label)):
        GOT10k(FolderStore(tmp_path), "t", "train")


def test_parsers_direct():
    np.testing.assert_array_equal(parse_number_rows("1,2,3,4\n5,6,7,8\n\n", "f", 4), [[1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(parse_int_flags("0,1,1\n", "f", range(2)), [0, 1, 1])
    with pytest.raises(ValueError, match="f: no annotation rows"):
        parse_number_rows("", "f", 4)


def test_corrupt_frame_is_an_error_naming_the_file(tmp_path):
    make_trackingnet(str(tmp_path))
    bad = tmp_path / "TRAIN_1" / "frames" / "vid_c" / "1.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = TrackingNet(FolderStore(tmp_path), chunks=("TRAIN_1",))
    with pytest.raises(ValueError, match=rf"{bad} could not be decoded"):
        ds.read_frame(0, 1)
    first = tmp_path / "TRAIN_1" / "frames" / "vid_c" / "0.jpg"
    first.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{first} is unreadable"):
        TrackingNet(FolderStore(tmp_path), chunks=("TRAIN_1",))


def write_env(tmp_path, data_dir):
    local = tmp_path / "local.py"
    fields = {
        "workspace_dir": tmp_path, "tensorboard_dir": tmp_path, "pretrained_networks": tmp_path,
        "lasot_dir": f"{data_dir}/lasot", "got10k_dir": f"{data_dir}/got10k", "trackingnet_dir": "",
        "coco_dir": f"{data_dir}/coco", "lasot_lmdb_dir": "", "got10k_lmdb_dir": f"{data_dir}/got10k_lmdb",
        "trackingnet_lmdb_dir": "", "coco_lmdb_dir": "", "synthetic_dir": f"{data_dir}/synthetic",
        "save_dir": tmp_path,
    }
    body = "".join(f"        self.{k} = {str(v)!r}\n" for k, v in fields.items())
    local.write_text(f"class EnvironmentSettings:\n    def __init__(self):\n{body}")
    return env_settings(str(local))


def test_registry(tmp_path):
    data = tmp_path / "data"
    make_got10k(str(data / "got10k"))
    make_got10k(str(data / "synthetic" / "a"), "val", ("s1",), frames=3)
    make_coco(str(data / "coco"))
    env = write_env(tmp_path, data)
    assert build_train_dataset("got10k_train_full", env).num_sequences() == 2
    assert build_train_dataset("coco2017_train", env).num_sequences() == 2
    synthetic = build_train_dataset("synthetic_a_val", env)
    assert synthetic.name == "synthetic_a_val" and synthetic.sequence(0).name == "s1"
    with pytest.raises(ValueError, match="'trackingnet_dir' is empty"):
        build_train_dataset("trackingnet_train", env)
    with pytest.raises(FileNotFoundError, match="'got10k_lmdb_dir'.*not an existing folder"):
        build_train_dataset("got10k_val", env, use_lmdb=True)
    with pytest.raises(KeyError, match="unknown training dataset 'lasot'"):
        build_train_dataset("lasot", env)
    with pytest.raises(ValueError, match="synthetic_<domain>_<split>"):
        build_train_dataset("synthetic_a", env)


def test_reads_what_the_synthetic_generator_writes(tmp_path):
    from fixtures_synthetic import write_coco, write_lasot, write_trackingnet
    from lib.utils import synthetic

    spec = synthetic.SyntheticSpec("A", 2, frames=(5, 8), image_size=(64, 48))
    synthetic.write_got10k(tmp_path / "data" / "synthetic" / "A", "train", spec)
    env = write_env(tmp_path, tmp_path / "data")
    ds = build_train_dataset("synthetic_a_train", env)  # domain matched case-insensitively
    assert ds.num_sequences() == 2 and ds.read_frame(0, 0).shape == (48, 64, 3)
    names = write_lasot(tmp_path / "lasot", spec, ["airplane"])
    assert LaSOT(FolderStore(tmp_path / "lasot"), sequence_names=names).num_sequences() == 2
    write_trackingnet(tmp_path / "tn", spec)
    assert TrackingNet(FolderStore(tmp_path / "tn"), chunks=("TRAIN_0",)).num_sequences() == 2
    write_coco(tmp_path / "coco", spec, crowd_probability=0.0)
    coco = COCO(FolderStore(tmp_path / "coco"))
    assert coco.num_sequences() >= 1 and coco.read_frame(0, 0).shape == (48, 64, 3)
