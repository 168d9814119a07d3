"""Test-dataset readers on tiny generated trees in each native layout, including the coordinate quirks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_eval_helpers import (
    make_env,
    make_got10k_split,
    moving_boxes,
    write_boxes,
    write_frame,
)

from lib.test.analysis.metrics import benchmark_spec
from lib.test.evaluation.datasets import (
    SPLITS_DIR,
    get_dataset,
    read_box_file,
    read_name_list,
)


def _write_lasot_seq(seq_dir: Path, gt: np.ndarray, occlusion: list[int], out_of_view: list[int]) -> None:
    """A LaSOT-layout sequence with one empty placeholder image per box (the loader only counts them)."""
    write_boxes(seq_dir / "groundtruth.txt", gt)
    (seq_dir / "img").mkdir(parents=True, exist_ok=True)
    for i in range(len(gt)):
        (seq_dir / "img" / f"{i + 1:08d}.jpg").touch()
    (seq_dir / "full_occlusion.txt").write_text(",".join(map(str, occlusion)) + "\n")
    (seq_dir / "out_of_view.txt").write_text(",".join(map(str, out_of_view)) + "\n")


def test_lasot_split_list_is_the_toolkit_test_set():
    names = read_name_list(SPLITS_DIR / "lasot_test.txt")
    assert len(names) == 280 and len(set(names)) == 280
    classes = {n.rsplit("-", 1)[0] for n in names}
    assert len(classes) == 70  # 4 test videos for each of LaSOT's 70 classes
    assert {"airplane-1", "zebra-17", "yoyo-7"} <= set(names)


def test_lasot_shifts_boxes_and_reads_visibility(tmp_path):
    root = tmp_path / "lasot"
    gt_file = np.array([[11, 21, 30, 40], [12, 22, 30, 40], [13, 23, 31, 41]], dtype=float)
    names = read_name_list(SPLITS_DIR / "lasot_test.txt")
    for name in names:
        _write_lasot_seq(root / name.rsplit("-", 1)[0] / name, gt_file, [0, 1, 0], [0, 0, 1])
    seqs = get_dataset("lasot", make_env(tmp_path, lasot_path=str(root)))
    assert [s.name for s in seqs] == names
    seq = seqs[0]
    assert seq.dataset == "lasot" and seq.file_offset == 1.0
    np.testing.assert_array_equal(seq.ground_truth_rect[:, :2], gt_file[:, :2] - 1)  # 1-based -> 0-based
    np.testing.assert_array_equal(seq.ground_truth_rect[:, 2:], gt_file[:, 2:])
    np.testing.assert_array_equal(seq.visible, [True, False, False])
    assert seq.frames[2].endswith("airplane/airplane-1/img/00000003.jpg")


def test_lasot_missing_sequence_folder_is_named(tmp_path):
    (tmp_path / "lasot").mkdir()
    with pytest.raises(FileNotFoundError, match="airplane-1"):
        get_dataset("lasot", make_env(tmp_path, lasot_path=str(tmp_path / "lasot")))


def test_lasot_extension_is_not_shifted(tmp_path):
    root = tmp_path / "ext"
    gt = np.array([[5, 6, 7, 8], [6, 7, 7, 8]], dtype=float)
    _write_lasot_seq(root / "wingsuit" / "wingsuit-3", gt, [0, 0], [1, 0])
    _write_lasot_seq(root / "atv" / "atv-1", gt, [0, 0], [0, 0])
    seqs = get_dataset("lasot_extension_subset", make_env(tmp_path, lasot_extension_subset_path=str(root)))
    assert [s.name for s in seqs] == ["atv-1", "wingsuit-3"]
    np.testing.assert_array_equal(seqs[1].ground_truth_rect, gt)
    assert seqs[1].file_offset == 0.0
    np.testing.assert_array_equal(seqs[1].visible, [False, True])


def test_got10k_val_and_test(tmp_path):
    root = tmp_path / "got10k"
    gts = make_got10k_split(root, "val", {"GOT-10k_Val_000001": 4, "GOT-10k_Val_000002": 3})
    make_got10k_split(root, "test", {"GOT-10k_Test_000001": 5}, full_gt=False)
    env = make_env(tmp_path, got10k_path=str(root))
    val = get_dataset("got10k_val", env)
    assert [s.name for s in val] == ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    np.testing.assert_array_equal(val[0].ground_truth_rect, gts["GOT-10k_Val_000001"])
    np.testing.assert_array_equal(val[0].visible, [True, True, True, False])
    np.testing.assert_array_equal(val[0].cover, [8, 8, 8, 0])
    assert val[0].image_size == (32, 24)
    test = get_dataset("got10k_test", env)
    assert test[0].num_frames == 5 and test[0].ground_truth_rect.shape == (1, 4)


def test_got10k_frames_sorted_numerically(tmp_path):
    seq_dir = tmp_path / "got10k" / "val" / "s"
    for i in (1, 2, 10):
        write_frame(seq_dir / f"{i}.jpg")
    write_boxes(seq_dir / "groundtruth.txt", np.ones((3, 4)))
    (seq_dir / "absence.label").write_text("0\n0\n0\n")
    (seq_dir / "cover.label").write_text("8\n8\n8\n")
    (tmp_path / "got10k" / "val" / "list.txt").write_text("s\n")
    seq = get_dataset("got10k_val", make_env(tmp_path, got10k_path=str(tmp_path / "got10k")))[0]
    assert [Path(f).name for f in seq.frames] == ["1.jpg", "2.jpg", "10.jpg"]


def test_synthetic_domain_and_split(tmp_path):
    make_got10k_split(tmp_path / "syn" / "shapes_hard", "val", {"a": 3, "b": 2}, with_list=False)
    seqs = get_dataset("synthetic_shapes_hard_val", make_env(tmp_path, synthetic_path=str(tmp_path / "syn")))
    assert [s.name for s in seqs] == ["a", "b"]
    assert seqs[0].dataset == "synthetic_shapes_hard_val"
    assert seqs[0].visible is not None and seqs[0].cover is not None


def test_trackingnet_first_row_only(tmp_path):
    root = tmp_path / "tn" / "TEST"
    write_boxes(root / "anno" / "seqB.txt", np.array([[1, 2, 3, 4]], dtype=float))
    write_boxes(root / "anno" / "seqA.txt", np.array([[5, 6, 7, 8]], dtype=float))
    for name in ("seqA", "seqB"):
        for i in (0, 1, 2, 11):
            write_frame(root / "frames" / name / f"{i}.jpg")
    seqs = get_dataset("trackingnet", make_env(tmp_path, trackingnet_path=str(tmp_path / "tn")))
    assert [s.name for s in seqs] == ["seqA", "seqB"]
    np.testing.assert_array_equal(seqs[0].ground_truth_rect, [[5, 6, 7, 8]])
    assert [Path(f).name for f in seqs[0].frames] == ["0.jpg", "1.jpg", "2.jpg", "11.jpg"]


def test_tnl2k_reads_every_folder(tmp_path):
    root = tmp_path / "tnl2k"
    gt = np.array([[1, 2, 3, 4], [0, 0, 0, 0]], dtype=float)
    for name in ("zz_seq", "aa_seq"):
        write_boxes(root / name / "groundtruth.txt", gt)
        write_frame(root / name / "imgs" / "00001.png")
        write_frame(root / name / "imgs" / "00002.png")
    (root / "not_a_sequence").mkdir()
    seqs = get_dataset("tnl2k", make_env(tmp_path, tnl2k_path=str(root)))
    assert [s.name for s in seqs] == ["aa_seq", "zz_seq"]
    np.testing.assert_array_equal(seqs[0].ground_truth_rect, gt)  # used as is (no shift)


def test_otb_two_target_folders_and_frame_ranges(tmp_path):
    root = tmp_path / "otb"
    ranges = {"David": 770, "Football1": 80}
    for name in read_name_list(SPLITS_DIR / "otb100.txt"):
        n_images = ranges.get(name, 3)
        n_boxes = {"David": 471, "Football1": 74}.get(name, 3)
        (root / name / "img").mkdir(parents=True)
        for i in range(1, n_images + 1):
            (root / name / "img" / f"{i:04d}.jpg").touch()
        if name not in ("Jogging", "Human4"):
            write_boxes(root / name / "groundtruth_rect.txt", np.ones((n_boxes, 4)), sep="\t")
    write_boxes(root / "Jogging" / "groundtruth_rect.1.txt", np.ones((3, 4)))
    write_boxes(root / "Jogging" / "groundtruth_rect.2.txt", np.full((3, 4), 2.0))
    (root / "Human4" / "groundtruth_rect.1.txt").write_text("\n")  # empty in the real dataset
    write_boxes(root / "Human4" / "groundtruth_rect.2.txt", np.ones((3, 4)), sep=" ")
    seqs = {s.name: s for s in get_dataset("otb", make_env(tmp_path, otb_path=str(root)))}
    assert len(seqs) == 99 and "Jogging_1" in seqs and "Jogging_2" in seqs and "Human4" in seqs
    np.testing.assert_array_equal(seqs["Jogging_2"].ground_truth_rect, np.full((3, 4), 2.0))
    assert Path(seqs["David"].frames[0]).name == "0300.jpg" and Path(seqs["David"].frames[-1]).name == "0770.jpg"
    assert seqs["Football1"].num_frames == 74


def test_nfs_corners_and_240fps_subsampling(tmp_path):
    root = tmp_path / "nfs"
    anno = root / "ball" / "30" / "ball.txt"
    anno.parent.mkdir(parents=True)
    rows = [f"{i + 1} {10 + i} 20 {30 + i} 50 {i} 0 0 0 \"ball\"" for i in range(24)]  # 240 fps rows for 3 frames
    anno.write_text("\n".join(rows) + "\n")
    for i in range(1, 4):
        (root / "ball" / "30" / "ball" / f"{i:05d}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (root / "ball" / "30" / "ball" / f"{i:05d}.jpg").touch()
    seq = get_dataset("nfs", make_env(tmp_path, nfs_path=str(root)))[0]
    np.testing.assert_array_equal(seq.ground_truth_rect, [[10, 20, 20, 30], [18, 20, 20, 30], [26, 20, 20, 30]])


def test_uav_uses_frame_ranges(tmp_path):
    root = tmp_path / "uav"
    for line in read_name_list(SPLITS_DIR / "uav123.txt"):
        name, _, first, last = line.split()
        anno = root / "anno" / "UAV123" / f"{name}.txt"
        anno.parent.mkdir(parents=True, exist_ok=True)
        anno.write_text("1,2,3,4\n" * (int(last) - int(first)) + "NaN,NaN,NaN,NaN\n")
    seqs = {s.name: s for s in get_dataset("uav", make_env(tmp_path, uav_path=str(root)))}
    assert len(seqs) == 123
    assert seqs["bird1_2"].frames[0].endswith("data_seq/UAV123/bird1/000775.jpg")
    assert seqs["bird1_2"].num_frames == 1477 - 775 + 1
    assert seqs["bird1_2"].ground_truth_rect[0].tolist() == [1, 2, 3, 4]
    assert np.isnan(seqs["bird1_2"].ground_truth_rect[-1]).all()  # absent target: NaN kept


def test_box_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "groundtruth.txt"
    bad.write_text("1,2,3,4\n1,2,x,4\n")
    with pytest.raises(ValueError, match=r"groundtruth.txt:2"):
        read_box_file(bad)
    bad.write_text("1,2,3\n")
    with pytest.raises(ValueError, match=r"groundtruth.txt:1: expected 4"):
        read_box_file(bad)
    nan = tmp_path / "nan.txt"
    nan.write_text("NaN,NaN,NaN,NaN\n1\t2\t3\t4\n")
    assert np.isnan(read_box_file(nan)[0]).all() and read_box_file(nan)[1].tolist() == [1, 2, 3, 4]


def test_missing_path_setting_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="lasot_path"):
        get_dataset("lasot", make_env(tmp_path))
    with pytest.raises(FileNotFoundError, match="got10k_path"):
        get_dataset("got10k_val", make_env(tmp_path, got10k_path=str(tmp_path / "nope")))
    with pytest.raises(KeyError, match="unknown dataset"):
        get_dataset("lasott", make_env(tmp_path))


def test_tc128_reads_the_annotated_frame_range_and_lower_case_range_files(tmp_path):
    """TC128 layout: <Seq>/<Seq>_gt.txt, <Seq>_frames.txt ('first,last'), img/%04d.jpg (more images than boxes)."""
    root = tmp_path / "tc128"
    for name, (first, last), frames_file in (("Ball_ce1", (3, 5), "Ball_ce1_frames.txt"),
                                             ("CarDark", (1, 2), "cardark_frames.txt")):
        for i in range(1, 7):
            write_frame(root / name / "img" / f"{i:04d}.jpg")
        write_boxes(root / name / f"{name}_gt.txt", moving_boxes(last - first + 1))
        (root / name / frames_file).write_text(f"{first},{last}\n")
    (root / "readme_folder").mkdir()
    seqs = get_dataset("tc128", make_env(tmp_path, tc128_path=str(root)))
    assert [s.name for s in seqs] == ["Ball_ce1", "CarDark"] and seqs[0].dataset == "tc128"
    assert [Path(f).name for f in seqs[0].frames] == ["0003.jpg", "0004.jpg", "0005.jpg"]
    np.testing.assert_array_equal(seqs[0].ground_truth_rect, moving_boxes(3))  # used as is (no shift)
    assert seqs[0].file_offset == 0.0 and benchmark_spec("tc128").protocols == ("ope",)
    (root / "CarDark" / "cardark_frames.txt").write_text("1,3\n")
    with pytest.raises(ValueError, match="CarDark.*annotates 2 frames but the range 1..3 of img/ holds 3"):
        get_dataset("tc128", make_env(tmp_path, tc128_path=str(root)))


def test_vasttrack_is_shifted_and_all_zero_rows_are_invisible(tmp_path):
    """VastTrack layout: <category>/<sequence>/{Groundtruth.txt (1-based x,y,w,h; 0,0,0,0 = absent), imgs/%05d.jpg}."""
    root = tmp_path / "vasttrack"
    gt = np.array([[11, 21, 5, 6], [0, 0, 0, 0], [13, 22, 5, 6]], dtype=float)
    for category, seq, anno in (("Aardwolf", "Aardwolf-1", "Groundtruth.txt"), ("Bee", "Bee-3", "groundtruth.txt")):
        write_boxes(root / category / seq / anno, gt)
        for i in range(1, 4):
            write_frame(root / category / seq / "imgs" / f"{i:05d}.jpg")
        (root / category / seq / "nlp.txt").write_text("a small animal\n")
    seqs = get_dataset("vasttrack", make_env(tmp_path, vasttrack_path=str(root)))
    assert [s.name for s in seqs] == ["Aardwolf-1", "Bee-3"] and seqs[1].dataset == "vasttrack"
    np.testing.assert_array_equal(seqs[0].ground_truth_rect[[0, 2]], [[10, 20, 5, 6], [12, 21, 5, 6]])
    np.testing.assert_array_equal(seqs[0].visible, [True, False, True])
    assert seqs[0].file_offset == 1.0  # result files are 1-based like the annotation
    assert benchmark_spec("vasttrack").coordinate_offset == 1.0
    assert seqs[0].frames[-1].endswith("Aardwolf/Aardwolf-1/imgs/00003.jpg")
