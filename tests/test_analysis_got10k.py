"""GOT-10k val metrics in the got10k toolkit convention (got10k/experiments/got10k.py): hand-worked rules and an
equality check against the PyPI `got10k` toolkit's ExperimentGOT10k on a generated val tree."""
from __future__ import annotations

import ast

import cv2
import numpy as np
import pytest

from lib.test.analysis.metrics import GOT10K_THRESHOLDS, SequenceGT, evaluate_dataset, evaluate_got10k

BOX = [10.0, 10.0, 10.0, 10.0]


def got_seq(name: str, boxes, cover=None, image_size=(100, 100)) -> SequenceGT:
    boxes = np.array(boxes, dtype=float)
    cover = np.full(len(boxes), 8) if cover is None else np.array(cover)
    return SequenceGT(name, boxes, image_size=image_size, cover=cover)


def test_first_frame_dropped_and_cover_zero_frames_ignored():
    # Frame 1 is far off (dropped, not replaced by GT); frame 2 IoU 0.5 ([10,10,10,5]); frame 3 perfect but
    # cover = 0 (ignored); frame 4 IoU 0.
    gt = got_seq("a", [BOX] * 4, cover=[8, 3, 0, 8])
    pred = np.array([[80, 80, 5, 5], [10, 10, 10, 5], BOX, [50, 50, 10, 10]], dtype=float)
    out = evaluate_got10k({"a": [pred]}, [gt])
    assert out["AO"] == pytest.approx(25.0)  # mean(0.5, 0)
    assert out["SR0.5"] == 0.0  # 0.5 is not > 0.5
    assert out["SR0.75"] == 0.0
    assert out["per_sequence"]["a"]["length"] == 3
    np.testing.assert_allclose(out["curves"]["success"], [np.mean(np.array([0.5, 0.0]) > t) for t in GOT10K_THRESHOLDS])


def test_boxes_are_clipped_to_the_image():
    # Image 100 x 100. Frame 2: pred [90,10,40,20] is clipped to [90,10,10,20]; GT [80,10,20,20]:
    # inter 10x20 = 200, union 400 + 200 - 200 = 400 -> 0.5 (0.2 without clipping).
    # Frame 3: pred [-10,10,20,20]: x clipped to 0 but w stays 20 (w is clipped to [0, W - x] = [0, 100]),
    # so it equals GT [0,10,20,20] -> IoU 1.
    # Frame 4: pred [120,10,20,20] lies right of the image: x -> 100, w -> 0 -> IoU 0.
    gt = got_seq("a", [BOX, [80, 10, 20, 20], [0, 10, 20, 20], [80, 10, 20, 20]])
    pred = np.array([BOX, [90, 10, 40, 20], [-10, 10, 20, 20], [120, 10, 20, 20]], dtype=float)
    out = evaluate_got10k({"a": [pred]}, [gt])
    assert out["AO"] == pytest.approx(100 * (0.5 + 1.0 + 0.0) / 3)
    assert out["SR0.5"] == pytest.approx(100 / 3)
    assert pred[1, 2] == 40.0  # inputs untouched (the toolkit clips in place; we work on copies)


def test_zero_and_negative_size_predictions_score_zero():
    gt = got_seq("a", [BOX] * 3)
    pred = np.array([BOX, [10, 10, 0, 10], [10, 10, -5, -5]], dtype=float)
    assert evaluate_got10k({"a": [pred]}, [gt])["AO"] == 0.0


def test_pooled_over_frames_not_averaged_over_sequences():
    # A: kept IoUs 1.0 and 0.5 (frames 2, 3); B: kept IoU 0 (frame 2).
    # Pooled AO = 1.5 / 3 = 50 %, the mean of sequence AOs would be (0.75 + 0) / 2 = 37.5 %.
    gts = [got_seq("A", [BOX] * 3), got_seq("B", [BOX] * 2)]
    results = {"A": [np.array([BOX, BOX, [10, 10, 10, 5]])], "B": [np.array([BOX, [60, 60, 10, 10]])]}
    out = evaluate_got10k(results, gts)
    assert out["AO"] == pytest.approx(50.0)
    assert out["SR0.5"] == pytest.approx(100 / 3)
    assert out["SR0.75"] == pytest.approx(100 / 3)
    assert out["per_sequence"]["A"]["AO"] == pytest.approx(75.0)
    assert out["per_sequence"]["B"]["AO"] == 0.0


def test_repetitions_are_pooled():
    # A has two repetitions (IoUs [1, 1] and [0.5, 0]), B one (IoU [0]): all five IoUs are pooled.
    gts = [got_seq("A", [BOX] * 3), got_seq("B", [BOX] * 2)]
    results = {
        "A": [np.array([BOX, BOX, BOX]), np.array([BOX, [10, 10, 10, 5], [70, 70, 5, 5]])],
        "B": [np.array([BOX, [60, 60, 10, 10]])],
    }
    out = evaluate_got10k(results, gts)
    assert out["AO"] == pytest.approx(100 * 2.5 / 5)
    assert out["SR0.5"] == pytest.approx(40.0)
    assert out["per_sequence"]["A"]["AO"] == pytest.approx(100 * 2.5 / 4)


def test_bad_inputs_name_the_sequence():
    gt = got_seq("GOT-10k_Val_000007", [BOX] * 3)
    with pytest.raises(ValueError, match="GOT-10k_Val_000007.*2 boxes.*3 frames"):
        evaluate_got10k({gt.name: [np.array([BOX] * 2)]}, [gt])
    with pytest.raises(ValueError, match="GOT-10k_Val_000007.*NaN.*\\[3\\]"):
        evaluate_got10k({gt.name: [np.array([BOX, BOX, [np.nan] * 4])]}, [gt])
    # A NaN box on a cover = 0 frame is ignored, as by the toolkit.
    masked = got_seq("m", [BOX] * 3, cover=[8, 8, 0])
    assert evaluate_got10k({"m": [np.array([BOX, BOX, [np.nan] * 4])]}, [masked])["AO"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="'n'.*image_size"):
        evaluate_got10k({"n": [np.array([BOX])]}, [SequenceGT("n", np.array([BOX]))])


def test_got10k_val_registry_entry():
    gt = got_seq("a", [BOX, [10, 10, 10, 5]])
    out = evaluate_dataset("got10k_val", {"a": [np.array([BOX, BOX])]}, [gt])
    assert list(out) == ["got10k"] and out["got10k"]["AO"] == pytest.approx(50.0)


# ------------------------------------------------------------------------------------------------------------
# Equality with the PyPI got10k toolkit


def _write_val_tree(root, rng):
    """A tiny GOT-10k val tree in the real on-disk format; returns {seq: (boxes, cover, (W, H))}."""
    val = root / "val"
    val.mkdir(parents=True)
    specs = {"GOT-10k_Val_000001": (12, (64, 48)), "GOT-10k_Val_000002": (7, (40, 30)),
             "GOT-10k_Val_000003": (9, (50, 50))}
    data = {}
    for name, (n, (w, h)) in specs.items():
        folder = val / name
        folder.mkdir()
        x = rng.uniform(-5, w - 10, n)
        y = rng.uniform(-5, h - 10, n)
        boxes = np.round(np.column_stack([x, y, rng.uniform(4, w / 2, n), rng.uniform(4, h / 2, n)]), 4)
        cover = rng.integers(0, 9, n)
        cover[:2] = [8, 0]
        np.savetxt(folder / "groundtruth.txt", boxes, fmt="%.4f", delimiter=",")
        np.savetxt(folder / "cover.label", cover, fmt="%d")
        np.savetxt(folder / "absence.label", (cover == 0).astype(int), fmt="%d")
        np.savetxt(folder / "cut_by_image.label", np.zeros(n, int), fmt="%d")
        (folder / "meta_info.ini").write_text(
            f"[METAINFO]\nurl: https://example.invalid/{name}\nresolution: ({w}, {h})\nobject_class: thing\n"
        )
        for i in range(n):
            cv2.imwrite(str(folder / f"{i + 1:08d}.jpg"), np.full((h, w, 3), 40 * (i % 6), np.uint8))
        data[name] = (boxes, cover, (w, h))
    (val / "list.txt").write_text("\n".join(specs) + "\n")
    return data


def _read_gt(root, name) -> SequenceGT:
    """Our own parse of the generated sequence folder."""
    folder = root / "val" / name
    meta = dict(line.split(": ", 1) for line in (folder / "meta_info.ini").read_text().splitlines()[1:])
    return SequenceGT(name, np.loadtxt(folder / "groundtruth.txt", delimiter=","),
                      image_size=ast.literal_eval(meta["resolution"]),
                      cover=np.loadtxt(folder / "cover.label"))


def test_matches_pypi_got10k_experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # Plain imports: a missing toolkit (or `six`, which it imports without declaring) must fail, not skip.
    import got10k.experiments as got10k_experiments
    import six  # noqa: F401
    rng = np.random.default_rng(11)
    data = _write_val_tree(tmp_path / "got10k", rng)
    tracker = "lorat_test"
    results = {}
    for name, (boxes, _, (w, h)) in data.items():
        folder = tmp_path / "results" / "GOT-10k" / tracker / name
        folder.mkdir(parents=True)
        runs = 2 if name.endswith("1") else 1
        results[name] = []
        for r in range(runs):
            pred = boxes + rng.normal(0, 4, boxes.shape)
            pred[3, 2] = -2.0  # a negative width
            pred[4] = [w - 3, 2, 30, 30]  # crossing the right border
            np.savetxt(folder / f"{name}_{r + 1:03d}.txt", pred, fmt="%.4f", delimiter=",")
            results[name].append(np.loadtxt(folder / f"{name}_{r + 1:03d}.txt", delimiter=","))
        np.savetxt(folder / f"{name}_time.txt", np.full((len(boxes), runs), 0.01), fmt="%.8f", delimiter=",")

    experiment = got10k_experiments.ExperimentGOT10k(
        str(tmp_path / "got10k"), subset="val", result_dir=str(tmp_path / "results"),
        report_dir=str(tmp_path / "reports"))
    reference = experiment.report([tracker])[tracker]

    ours = evaluate_got10k(results, [_read_gt(tmp_path / "got10k", name) for name in data])
    assert ours["AO"] == pytest.approx(100 * reference["overall"]["ao"], abs=1e-10)
    assert ours["SR0.5"] == pytest.approx(100 * reference["overall"]["sr"], abs=1e-10)
    assert ours["SR0.75"] == pytest.approx(100 * reference["overall"]["succ_curve"][75], abs=1e-10)
    np.testing.assert_allclose(ours["curves"]["success"], reference["overall"]["succ_curve"], atol=1e-12)
    for name in data:
        assert ours["per_sequence"][name]["AO"] == pytest.approx(100 * reference["seq_wise"][name]["ao"], abs=1e-10)
        assert ours["per_sequence"][name]["SR0.5"] == pytest.approx(100 * reference["seq_wise"][name]["sr"],
                                                                     abs=1e-10)
        assert ours["per_sequence"][name]["length"] == reference["seq_wise"][name]["length"]
    # Sanity: the generated data exercise the rules (some frames dropped by cover, boxes over the border).
    assert 0 < ours["AO"] < 100
