from __future__ import annotations

import configparser
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fixtures_synthetic import rle_encode, write_coco, write_lasot, write_trackingnet
from lib.utils import synthetic
from lib.utils.synthetic import (ABSENT_BELOW, DemoPlan, SyntheticSpec, ensure_demo_data, generate_sequence, render,
                                 sequence_labels, write_got10k)
from lib.utils.synthetic_render import Sprite, place, spline

SMALL = dict(frames=(12, 16), image_size=(96, 72))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _decode(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


# ------------------------------------------------------------------------------------------ determinism

def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path):
    spec = SyntheticSpec("B", 3, seed=7, **SMALL)
    write_got10k(tmp_path / "one", "train", spec, workers=1)
    write_got10k(tmp_path / "two", "train", spec, workers=2)
    first, second = _tree_bytes(tmp_path / "one"), _tree_bytes(tmp_path / "two")
    assert first.keys() == second.keys() and len(first) > 3 * 12
    assert all(first[k] == second[k] for k in first)


def test_different_seed_or_index_range_gives_different_sequences():
    base = SyntheticSpec("A", 2, seed=1, **SMALL)
    frames, boxes, _ = generate_sequence(base, 0)
    other_frames, other_boxes, _ = generate_sequence(SyntheticSpec("A", 2, seed=2, **SMALL), 0)
    shifted_frames, _, _ = generate_sequence(SyntheticSpec("A", 2, seed=1, first_index=1, **SMALL), 0)
    assert not np.array_equal(frames[0], other_frames[0])
    assert boxes.shape != other_boxes.shape or not np.allclose(boxes, other_boxes)
    # first_index shifts the stream: sequence 1 of `base` is sequence 0 of the shifted spec
    assert np.array_equal(generate_sequence(base, 1)[0][0], shifted_frames[0])


# ---------------------------------------------------------------------------------- annotation geometry

def test_place_maps_the_sprite_box_exactly_onto_the_requested_box():
    alpha = np.zeros((10, 14), np.float32)
    alpha[2:8, 2:12] = 1.0  # a 10 x 6 box at (2, 2) in sprite coordinates
    sprite = Sprite(np.zeros((10, 14, 3), np.float32), alpha, (2.0, 2.0, 12.0, 8.0), "rectangle", "checker")
    placed = place(sprite, np.array([10.0, 20.0, 30.0, 32.0]))  # scale (2, 2), translation to (10, 20)
    ys, xs = np.nonzero(placed.alpha > 0.5)
    assert (xs.min() + placed.x, xs.max() + 1 + placed.x) == (10, 30)
    assert (ys.min() + placed.y, ys.max() + 1 + placed.y) == (20, 32)
    assert placed.alpha.sum() == pytest.approx(20 * 12, rel=0.02)


def test_spline_passes_through_its_keys():
    keys = np.array([[0.0, 1.0], [5.0, -2.0], [3.0, 4.0], [9.0, 0.0]])
    curve = spline(keys, 10)  # keys land on frames 0, 3, 6, 9
    np.testing.assert_allclose(curve[[0, 3, 6, 9]], keys, atol=1e-12)


@pytest.mark.parametrize("domain", ["A", "B"])
def test_labels_are_consistent_with_visibility(domain):
    spec = SyntheticSpec(domain, 6, frames=(30, 40), seed=3, occluders=(2, 2), exit_probability=1.0)
    width, height = spec.image_size
    saw_outside = saw_partial = False
    for index in range(spec.num_sequences):
        rendered = render(spec, index)
        labels = sequence_labels(rendered, spec.image_size)
        boxes, visible = labels.boxes, labels.visible_fraction
        assert len(rendered.frames) == len(boxes) == len(visible)
        assert rendered.frames[0].shape == (height, width, 3) and rendered.frames[0].dtype == np.uint8
        # frame 0 is a usable init: fully visible target fully inside the image
        assert visible[0] == 1.0 and labels.cover[0] == 8
        x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
        inside = (x0 >= 0) & (y0 >= 0) & (x1 <= width) & (y1 <= height) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        fully_outside = (x1 <= 0) | (y1 <= 0) | (x0 >= width) | (y0 >= height)
        assert np.all(inside | fully_outside)
        assert np.all(inside[~labels.absent])
        assert np.array_equal(fully_outside, labels.outside)
        assert np.all(labels.absent[fully_outside]) and np.all(visible[fully_outside] == 0)
        assert np.array_equal(labels.absent, visible < ABSENT_BELOW)
        assert np.all(labels.out_of_view <= labels.absent)
        # cover: 0 iff absent, 8 iff fully visible, never decreasing with visibility
        assert labels.cover.min() >= 0 and labels.cover.max() <= 8
        assert np.array_equal(labels.cover == 0, labels.absent)
        assert np.array_equal(labels.cover == 8, visible == 1.0)
        order = np.argsort(visible, kind="stable")
        assert np.all(np.diff(labels.cover[order]) >= 0)
        # the full (unclipped) box is exactly what was clipped
        np.testing.assert_allclose(np.clip(rendered.boxes, 0, [width, height, width, height])[inside],
                                   np.column_stack([x0, y0, x1, y1])[inside])
        saw_outside |= bool(fully_outside.any())
        saw_partial |= bool(np.any((visible > ABSENT_BELOW) & (visible < 0.9) & (rendered.in_view == 1.0)))
    assert saw_outside, "exit_probability=1 should make some targets leave the view"
    assert saw_partial, "two occluders per sequence should partly hide some targets"


def test_target_moves_and_changes_scale_and_aspect():
    spec = SyntheticSpec("A", 4, frames=(60, 60), seed=5, exit_probability=0.0)
    for index in range(spec.num_sequences):
        boxes = render(spec, index).boxes
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        sizes = boxes[:, 2:] - boxes[:, :2]
        aspect = sizes[:, 0] / sizes[:, 1]
        assert np.ptp(centres, axis=0).max() > 15.0  # a static box would not follow it
        assert np.abs(np.diff(centres, axis=0)).max() < 25.0  # smooth: no teleporting
        assert sizes.prod(axis=1).max() / sizes.prod(axis=1).min() > 1.1
        assert aspect.max() / aspect.min() > 1.02


def test_domains_differ_in_colour_statistics():
    means = {}
    for domain in ("A", "B"):
        spec = SyntheticSpec(domain, 4, seed=11, **SMALL)
        frames = np.concatenate([np.stack(generate_sequence(spec, i)[0]) for i in range(4)])
        means[domain] = frames.reshape(-1, 3).astype(np.float64).mean(axis=0)
    red_a, green_a, blue_a = means["A"]
    red_b, green_b, blue_b = means["B"]
    assert green_a > blue_a + 20  # warm/green meadows
    assert blue_b > green_b + 10  # blue/purple tiles
    assert (blue_b - green_b) - (blue_a - green_a) > 40


# -------------------------------------------------------------------------------------------- formats

def test_got10k_files_parse(tmp_path):
    spec = SyntheticSpec("A", 3, seed=2, exit_probability=1.0, **SMALL)
    names = write_got10k(tmp_path, "val", spec)
    assert (tmp_path / "val" / "list.txt").read_text().split("\n") == names + [""]
    assert names[0] == "GOT-10k_Val_000001"
    for index, name in enumerate(names):
        folder = tmp_path / "val" / name
        frames = sorted(folder.glob("*.jpg"))
        gt = np.loadtxt(folder / "groundtruth.txt", delimiter=",", ndmin=2)
        absence = np.loadtxt(folder / "absence.label", dtype=np.int64, ndmin=1)
        cover = np.loadtxt(folder / "cover.label", dtype=np.int64, ndmin=1)
        cut = np.loadtxt(folder / "cut_by_image.label", dtype=np.int64, ndmin=1)
        assert [f.name for f in frames] == [f"{t:08d}.jpg" for t in range(1, len(gt) + 1)]
        assert gt.shape[1] == 4 and len(absence) == len(cover) == len(cut) == len(gt)
        assert _decode(frames[0]).shape == (72, 96, 3)
        assert set(absence) <= {0, 1} and set(cut) <= {0, 1} and cover.min() >= 0 and cover.max() <= 8
        assert np.array_equal(cover == 0, absence == 1)
        _, boxes, visible = generate_sequence(spec, index)
        expected = np.where(((boxes[:, :2] + boxes[:, 2:] <= 0) | (boxes[:, :2] >= [96, 72])).any(1)[:, None],
                            -1.0, boxes)
        np.testing.assert_allclose(gt, expected, atol=6e-5)
        np.testing.assert_array_equal(absence, visible < ABSENT_BELOW)
        text = (folder / "meta_info.ini").read_text()
        lines = text.splitlines()
        assert lines[0] == "[METAINFO]" and text.endswith("\n")
        keys = [line.split(": ")[0] for line in lines[1:]]
        assert keys == ["url", "begin", "end", "anno_fps", "object_class", "motion_class", "major_class",
                        "root_class", "motion_adverb", "resolution"]
        assert lines[5].split(": ")[-1] in ("ellipse", "rectangle", "polygon")  # position-based readers
        parser = configparser.ConfigParser()
        parser.read_string(text)
        assert tuple(int(v) for v in parser["METAINFO"]["resolution"].strip("()").split(",")) == (96, 72)


def test_lasot_files_parse(tmp_path):
    spec = SyntheticSpec("B", 4, seed=4, exit_probability=1.0, occluders=(2, 2), **SMALL)
    names = write_lasot(tmp_path, spec, ["star", "cross"])
    assert names == ["star-1", "cross-1", "star-2", "cross-2"]
    for index, name in enumerate(names):
        folder = tmp_path / name.split("-")[0] / name
        gt = np.loadtxt(folder / "groundtruth.txt", delimiter=",", dtype=np.int64, ndmin=2)
        occlusion = np.array((folder / "full_occlusion.txt").read_text().strip().split(","), dtype=np.int64)
        out_of_view = np.array((folder / "out_of_view.txt").read_text().strip().split(","), dtype=np.int64)
        assert len((folder / "full_occlusion.txt").read_text().splitlines()) == 1
        assert len(gt) == len(occlusion) == len(out_of_view) == len(list((folder / "img").glob("*.jpg")))
        assert (folder / "img" / "00000001.jpg").is_file() and (folder / "nlp.txt").read_text().strip()
        assert not np.any(occlusion & out_of_view)
        _, boxes, visible = generate_sequence(spec, index)
        np.testing.assert_array_equal((occlusion | out_of_view) == 1, visible < ABSENT_BELOW)
        shown = out_of_view == 0
        # 1-based integer x, y; x + w - 1 is the last pixel column (continuous right edge = x - 1 + w)
        np.testing.assert_allclose(gt[shown, :2] - 1, boxes[shown, :2], atol=0.5 + 1e-9)
        np.testing.assert_allclose(gt[shown, :2] - 1 + gt[shown, 2:], boxes[shown, :2] + boxes[shown, 2:],
                                   atol=0.5 + 1e-9)
        assert np.all(gt[~shown] == 0)
        assert np.all(gt[shown, :2] >= 1) and np.all(gt[shown, 0] - 1 + gt[shown, 2] <= 96)


def test_trackingnet_files_parse(tmp_path):
    spec = SyntheticSpec("A", 2, seed=6, **SMALL)
    train = write_trackingnet(tmp_path, spec, "TRAIN_3")
    test = write_trackingnet(tmp_path, spec, "TEST")
    assert train == test
    for index, name in enumerate(train):
        full = np.loadtxt(tmp_path / "TRAIN_3" / "anno" / f"{name}.txt", delimiter=",", ndmin=2)
        first = np.loadtxt(tmp_path / "TEST" / "anno" / f"{name}.txt", delimiter=",", ndmin=2)
        frames = sorted((tmp_path / "TRAIN_3" / "frames" / name).glob("*.jpg"), key=lambda p: int(p.stem))
        assert [p.name for p in frames] == [f"{t}.jpg" for t in range(len(full))]
        assert first.shape == (1, 4) and np.array_equal(first[0], full[0])
        _, boxes, visible = generate_sequence(spec, index)
        np.testing.assert_allclose(full, np.where((visible < ABSENT_BELOW)[:, None], 0.0, boxes), atol=6e-5)
    with pytest.raises(ValueError, match="TRAIN_<k>"):
        write_trackingnet(tmp_path, spec, "train")


def _rle_decode(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    values = np.zeros(height * width, dtype=bool)
    position = 0
    for k, count in enumerate(rle["counts"]):
        values[position:position + count] = k % 2 == 1
        position += count
    assert position == height * width
    return values.reshape(width, height).T


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_rle_round_trip_and_pycocotools_agree():
    mask = np.zeros((5, 4), dtype=bool)
    mask[0, 0] = mask[1:3, 2] = mask[4, 3] = True
    rle = rle_encode(mask)
    assert rle["counts"][0] == 0 and sum(rle["counts"]) == 20
    np.testing.assert_array_equal(_rle_decode(rle), mask)
    from pycocotools import mask as coco_mask
    np.testing.assert_array_equal(coco_mask.decode(coco_mask.frPyObjects(rle, 5, 4)).astype(bool), mask)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coco_files_parse(tmp_path):
    spec = SyntheticSpec("B", 6, seed=8, image_size=(96, 72))
    path = write_coco(tmp_path, spec, crowd_probability=0.5)
    assert path == tmp_path / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    assert [c["name"] for c in data["categories"]] == ["star", "cross", "blob", "arrow"]
    category_ids = {c["id"] for c in data["categories"]}
    images = {image["id"]: image for image in data["images"]}
    assert len(images) == 6
    for image in images.values():
        assert _decode(tmp_path / "images" / "train2017" / image["file_name"]).shape == (72, 96, 3)
    annotations = data["annotations"]
    assert len({a["id"] for a in annotations}) == len(annotations) >= 12
    assert any(a["iscrowd"] == 1 for a in annotations) and any(a["iscrowd"] == 0 for a in annotations)
    from pycocotools import mask as coco_mask
    for a in annotations:
        assert a["image_id"] in images and a["category_id"] in category_ids
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 96 and y + h <= 72
        if a["iscrowd"]:
            mask = _rle_decode(a["segmentation"])
            assert mask.sum() == a["area"]
            ys, xs = np.nonzero(mask)
            assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == a["bbox"]
        else:
            rles = coco_mask.frPyObjects(a["segmentation"], 72, 96)
            area = float(coco_mask.area(coco_mask.merge(rles)))
            assert area == pytest.approx(a["area"], rel=0.35, abs=12)


# ----------------------------------------------------------------------------------------- demo + speed

def test_ensure_demo_data_regenerates_only_when_incomplete(tmp_path, monkeypatch):
    monkeypatch.setitem(synthetic.DEMO_PLANS, True, DemoPlan({"train": 2, "val": 1, "test": 1}, (5, 6)))
    paths = ensure_demo_data(tmp_path, seed=0, quick=True, workers=1)
    assert paths == {"A": tmp_path / "A", "B": tmp_path / "B"}
    for domain in ("A", "B"):
        for split, count in (("train", 2), ("val", 1), ("test", 1)):
            assert len((paths[domain] / split / "list.txt").read_text().split()) == count
    marker = tmp_path / synthetic.DEMO_MARKER
    before = _tree_bytes(tmp_path)
    gt = paths["A"] / "train" / "GOT-10k_Train_000001" / "groundtruth.txt"
    stamp = gt.stat().st_mtime_ns
    ensure_demo_data(tmp_path, seed=0, quick=True, workers=1)
    assert gt.stat().st_mtime_ns == stamp  # complete: left alone
    # interrupted run: marker missing and a stray half-written file -> everything regenerated
    marker.unlink()
    (paths["A"] / "train" / "stray.tmp").write_text("x")
    ensure_demo_data(tmp_path, seed=0, quick=True, workers=1)
    assert _tree_bytes(tmp_path) == before
    # different seed -> different data, marker updated
    ensure_demo_data(tmp_path, seed=1, quick=True, workers=1)
    assert gt.read_bytes() != before[str(gt.relative_to(tmp_path))]
    assert json.loads(marker.read_text())["specs"]["A"]["train"]["seed"] == 1
    # val/test sequences differ from train ones (disjoint index ranges)
    val_gt = (paths["A"] / "val" / "GOT-10k_Val_000001" / "groundtruth.txt").read_bytes()
    assert val_gt != gt.read_bytes()


def test_bad_spec_is_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="domain"):
        SyntheticSpec("C", 1)
    with pytest.raises(ValueError, match="frames"):
        SyntheticSpec("A", 1, frames=(10, 5))
    with pytest.raises(ValueError, match="image_size"):
        SyntheticSpec("A", 1, image_size=(16, 120))
    with pytest.raises(IndexError):
        generate_sequence(SyntheticSpec("A", 1), 1)
    with pytest.raises(ValueError, match="class names"):
        write_lasot("/nonexistent", SyntheticSpec("A", 1), [])


def test_occluders_need_sequences_of_two_frames():
    """An occluder crosses the target after frame 0: one-frame sequences with occluders are refused up front
    (they used to fail with an IndexError deep in the renderer); without occluders they render."""
    with pytest.raises(ValueError, match="at least 2 frames"):
        SyntheticSpec("A", 1, frames=(1, 3))
    frames, boxes, _ = generate_sequence(SyntheticSpec("A", 1, frames=(1, 1), occluders=(0, 0)), 0)
    assert len(frames) == 1 and boxes.shape == (1, 4)
