"""Submission packing: zip names and file contents for GOT-10k and TrackingNet, completeness, no deletion."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from lib.test.evaluation.data import Sequence
from lib.test.evaluation.results import write_sequence_result
from lib.test.utils.packing import pack_results, zip_groups


def _seq(name: str, dataset: str, n: int) -> Sequence:
    return Sequence(name, tuple(f"{i}.jpg" for i in range(n)), dataset, np.array([[1.0, 2.0, 3.0, 4.0]]))


def test_got10k_zip_with_three_runs(tmp_path):
    seqs = [_seq("GOT-10k_Test_000001", "got10k_test", 2), _seq("GOT-10k_Test_000002", "got10k_test", 1)]
    dirs = [tmp_path / f"base_224_{k:03d}" for k in range(3)]
    for k, d in enumerate(dirs):
        for seq in seqs:
            boxes = np.tile([10.25 + k, 5.5, 20.5, 7.0], (seq.num_frames, 1))
            write_sequence_result(d, seq, boxes, np.full(seq.num_frames, 0.125 * (k + 1)))
    out = pack_results("got10k_test", seqs, dirs, tmp_path / "packed" / "got.zip")
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == [
            "GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt", "GOT-10k_Test_000001/GOT-10k_Test_000001_002.txt",
            "GOT-10k_Test_000001/GOT-10k_Test_000001_003.txt", "GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt",
            "GOT-10k_Test_000002/GOT-10k_Test_000002_001.txt", "GOT-10k_Test_000002/GOT-10k_Test_000002_002.txt",
            "GOT-10k_Test_000002/GOT-10k_Test_000002_003.txt", "GOT-10k_Test_000002/GOT-10k_Test_000002_time.txt",
        ]
        # x1 = 10.25 -> 10, x2 = 30.75 -> floor(31.7499) = 31, y1 = 5.5 -> 5, y2 = 12.5 -> 13: 10,5,21,8
        assert archive.read("GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt").decode() == (
            "10.0000,5.0000,21.0000,8.0000\n" * 2)
        # run 2: x1 = 11.25 -> 11, x2 = 31.75 -> 32
        second_run = archive.read("GOT-10k_Test_000002/GOT-10k_Test_000002_002.txt").decode()
        assert second_run == "11.0000,5.0000,21.0000,8.0000\n"
        assert archive.read("GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt").decode() == "0.12500000\n0.12500000\n"
    assert all((d / "got10k_test" / "GOT-10k_Test_000001.txt").is_file() for d in dirs)  # sources kept
    assert not list((tmp_path / "packed").glob("*.tmp"))


def test_trackingnet_flat_zip_and_float_option(tmp_path):
    seqs = [_seq("b_seq", "trackingnet", 2), _seq("a_seq", "trackingnet", 1)]
    for seq in seqs:
        write_sequence_result(tmp_path / "r", seq, np.tile([1.5, 2.25, 3.0, 4.0], (seq.num_frames, 1)),
                              np.zeros(seq.num_frames))
    out = pack_results("trackingnet", seqs, [tmp_path / "r"], tmp_path / "tn.zip")
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["b_seq.txt", "a_seq.txt"]
        assert archive.read("b_seq.txt").decode() == "1.00,2.00,4.00,5.00\n" * 2  # x2 = 4.5 -> 4, y2 = 6.25 -> 7
    out = pack_results("trackingnet", seqs, [tmp_path / "r"], tmp_path / "tn_float.zip", rasterize_boxes=False)
    with zipfile.ZipFile(out) as archive:
        assert archive.read("a_seq.txt").decode() == "1.50,2.25,3.00,4.00\n"


def test_incomplete_results_are_listed_and_nothing_written(tmp_path):
    seqs = [_seq("s1", "trackingnet", 1), _seq("s2", "trackingnet", 2), _seq("s3", "trackingnet", 1)]
    write_sequence_result(tmp_path / "r", seqs[0], np.ones((1, 4)), np.zeros(1))
    with pytest.raises(FileNotFoundError, match=r"2 missing: s2, s3"):
        pack_results("trackingnet", seqs, [tmp_path / "r"], tmp_path / "tn.zip")
    assert not (tmp_path / "tn.zip").exists()
    with pytest.raises(ValueError, match="one run per zip"):
        write_sequence_result(tmp_path / "r2", seqs[0], np.ones((1, 4)), np.zeros(1))
        pack_results("trackingnet", seqs[:1], [tmp_path / "r", tmp_path / "r2"], tmp_path / "tn.zip")


def test_zip_groups():
    assert zip_groups("got10k_test", [0, 1, 2]) == [[0, 1, 2]]
    assert zip_groups("trackingnet", [0, 1]) == [[0], [1]]
    with pytest.raises(KeyError, match="packable"):
        zip_groups("lasot", [None])
