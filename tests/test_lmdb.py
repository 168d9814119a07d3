from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
import pytest

from lib.train.dataset import COCO, GOT10k, LaSOT, TrackingNet
from lib.utils.lmdb_store import FolderStore, LmdbStore, iter_files, pack_folder_to_lmdb
from tests.test_datasets_fixtures import LASOT_NAMES, make_coco, make_got10k, make_lasot, make_trackingnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_same_dataset(a, b):
    """Same sequences, boxes, validity, cover levels and decoded frames."""
    assert a.num_sequences() == b.num_sequences() > 0
    for i in range(a.num_sequences()):
        sa, sb = a.sequence(i), b.sequence(i)
        assert (sa.name, sa.frame_count, len(sa.tracks)) == (sb.name, sb.frame_count, len(sb.tracks))
        for ta, tb in zip(sa.tracks, sb.tracks):
            np.testing.assert_array_equal(ta.boxes, tb.boxes)
            np.testing.assert_array_equal(ta.valid, tb.valid)
            assert (ta.cover is None) == (tb.cover is None)
            if ta.cover is not None:
                np.testing.assert_array_equal(ta.cover, tb.cover)
        for f in range(sa.frame_count):
            np.testing.assert_array_equal(a.read_frame(i, f), b.read_frame(i, f))


BUILDERS = {
    "lasot": (make_lasot, lambda s: LaSOT(s, sequence_names=LASOT_NAMES)),
    "got10k": (make_got10k, lambda s: GOT10k(s, "got10k_train_full", "train")),
    "trackingnet": (make_trackingnet, lambda s: TrackingNet(s, chunks=("TRAIN_0", "TRAIN_1"))),
    "coco": (make_coco, lambda s: COCO(s)),
}


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_lmdb_gives_the_same_samples_as_folders(tmp_path, fmt):
    make, build = BUILDERS[fmt]
    root, out = str(tmp_path / "data"), str(tmp_path / "packed")
    make(root)
    # A tiny initial map size forces several map-size doublings; tiny batches force several commits.
    count = pack_folder_to_lmdb(root, out, batch_bytes=2000, initial_map_size=64 << 10)
    assert count == len(list(iter_files(root))) and not os.path.exists(out + ".tmp")
    assert_same_dataset(build(FolderStore(root)), build(LmdbStore(out)))


def test_store_listing_and_errors(tmp_path):
    root, out = str(tmp_path / "data"), str(tmp_path / "packed")
    make_trackingnet(root)
    pack_folder_to_lmdb(root, out)
    folder, packed = FolderStore(root), LmdbStore(out)
    for prefix in ("", "TRAIN_0", "TRAIN_0/frames", "TRAIN_0/frames/vid_a", "TRAIN_1/anno/"):
        assert packed.list(prefix) == folder.list(prefix)
    assert packed.list("") == ["TRAIN_0", "TRAIN_1"]
    assert packed.exists("TRAIN_0/anno/vid_a.txt") and packed.exists("TRAIN_0/frames")
    assert not packed.exists("TRAIN_0/fram") and not packed.exists("TRAIN_9")
    assert packed.read_text("TRAIN_0/anno/vid_a.txt") == folder.read_text("TRAIN_0/anno/vid_a.txt")
    with pytest.raises(FileNotFoundError, match=r"packed\[TRAIN_0/anno/nope.txt\]: key not found"):
        packed.read_bytes("TRAIN_0/anno/nope.txt")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        packed.list("TRAIN_7")
    with pytest.raises(FileNotFoundError, match="does not exist or is not an LMDB"):
        LmdbStore(str(tmp_path / "missing"))
    with pytest.raises(FileExistsError, match="already exists"):
        pack_folder_to_lmdb(root, out)
    clone = pickle.loads(pickle.dumps(packed))  # DataLoader workers get a copy that reopens the LMDB
    assert clone.read_bytes("TRAIN_1/anno/vid_c.txt") == folder.read_bytes("TRAIN_1/anno/vid_c.txt")


def test_build_lmdb_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("build_lmdb", os.path.join(ROOT, "tracking", "build_lmdb.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root, out = tmp_path / "got10k", tmp_path / "got10k_lmdb"
    make_got10k(str(root))
    (tmp_path / "got10k_lmdb.tmp").mkdir()  # a stale half-built LMDB is discarded
    assert module.main(["--dataset", "got10k", "--root", str(root), "--out", str(out)]) == 0
    assert "packed" in capsys.readouterr().out
    assert_same_dataset(GOT10k(FolderStore(root), "a", "train"), GOT10k(LmdbStore(out), "b", "train"))
    assert not (tmp_path / "got10k_lmdb.tmp").exists()


def test_shared_lmdb_and_dataloader_workers(tmp_path):
    import torch.utils.data

    from lib.train.data.pairs import TrainingPairs

    root, out = str(tmp_path / "got10k"), str(tmp_path / "got10k_lmdb")
    make_got10k(root)
    make_got10k(root, "val", ("v1",), frames=3)
    pack_folder_to_lmdb(root, out)
    train, val = GOT10k(LmdbStore(out), "t", "train"), GOT10k(LmdbStore(out), "v", "val")  # one LMDB, two stores
    assert train.read_frame(0, 0).shape == val.read_frame(0, 0).shape == (48, 64, 3)
    pairs = TrainingPairs([train, val], [1, 1], 8, 100, lambda images, boxes, rng: {"z": images[0].mean(), "box": boxes[0]}, seed=0)
    loader = torch.utils.data.DataLoader(pairs, batch_size=4, num_workers=2, multiprocessing_context="fork")
    from_workers = [float(v) for batch in loader for v in batch["z"]]
    assert from_workers == [float(pairs[i]["z"]) for i in range(8)]
