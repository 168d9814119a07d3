"""Scoring result files: LaSOT 1-based files round trip, run-id merging, tracker comparison, missing results."""
from __future__ import annotations

import numpy as np
import pytest

from lib.test.evaluation.analysis import (
    MissingResultsError, MixedProducersError, TrackerEntry, evaluate_trackers, producer_summary, summary_rows,
)
from lib.test.evaluation.data import Sequence
from lib.test.evaluation.results import claim_results_dir, tracker_results_dir, write_sequence_result

GT = np.array([[0.0, 0.0, 10.0, 10.0], [2.0, 1.0, 10.0, 10.0], [4.0, 2.0, 10.0, 10.0], [6.0, 3.0, 10.0, 10.0]])


def _lasot_seq(name: str) -> Sequence:
    return Sequence(name, tuple(f"{i}.jpg" for i in range(4)), "lasot", GT.copy(), visible=np.ones(4, bool),
                    file_offset=1.0)


def _write(results_path, script, config, run_id, seq, boxes):
    write_sequence_result(tracker_results_dir(results_path, script, config, run_id), seq, boxes, np.zeros(len(boxes)))


def test_perfect_and_static_trackers_on_lasot_files(tmp_path):
    seqs = [_lasot_seq("cat-1"), _lasot_seq("dog-2")]
    for seq in seqs:
        _write(tmp_path, "perfect", "c", None, seq, GT)  # files hold GT + 1 (1-based), read back -1
        for run_id in (0, 1):
            _write(tmp_path, "static", "c", run_id, seq, np.tile(GT[0], (4, 1)))
    entries = [TrackerEntry("perfect", "c", display_name="Perfect"), TrackerEntry("static", "c", (0, 1))]
    rows = summary_rows(evaluate_trackers("lasot", seqs, entries, tmp_path))
    assert list(rows) == ["Perfect", "static/c_000+001"]
    # IoU 1 everywhere: success is 1 for the 20 thresholds below 1 and 0 at 1 (strict >) -> AUC = 20/21.
    assert rows["Perfect"]["AUC"] == pytest.approx(100 * 20 / 21)
    assert rows["Perfect"]["Precision"] == pytest.approx(100.0)
    # static: frame errors (2,1)*k -> centre distances 0, sqrt5, sqrt20, sqrt45 -> all <= 20 px
    assert rows["static/c_000+001"]["Precision"] == pytest.approx(100.0)
    ious = [1.0] + [(10 - 2 * k) * (10 - k) / (200 - (10 - 2 * k) * (10 - k)) for k in (1, 2, 3)]
    assert rows["static/c_000+001"]["OP50"] == pytest.approx(100 * np.mean(np.array(ious) > 0.5))


def test_missing_results_are_listed(tmp_path):
    seqs = [_lasot_seq("cat-1"), _lasot_seq("dog-2"), _lasot_seq("eel-3")]
    _write(tmp_path, "t", "c", 0, seqs[0], GT)
    _write(tmp_path, "t", "c", 1, seqs[0], GT)
    _write(tmp_path, "t", "c", 1, seqs[2], GT)
    with pytest.raises(MissingResultsError) as info:
        evaluate_trackers("lasot", seqs, [TrackerEntry("t", "c", (0, 1))], tmp_path)
    message = str(info.value)
    assert "c_000/lasot: 2 missing: dog-2, eel-3" in message and "c_001/lasot: 1 missing: dog-2" in message


def test_server_scored_dataset_is_refused(tmp_path):
    seq = Sequence("s", ("a.jpg",), "trackingnet", np.ones((1, 4)))
    with pytest.raises(ValueError, match="evaluation server"):
        evaluate_trackers("trackingnet", [seq], [TrackerEntry("t", "c")], tmp_path)


def test_a_config_without_results_lists_the_configs_that_have_some(tmp_path):
    seqs = [_lasot_seq("cat-1")]
    _write(tmp_path, "t", "c", 0, seqs[0], GT)
    _write(tmp_path, "t", "base", None, seqs[0], GT)
    with pytest.raises(MissingResultsError) as info:
        evaluate_trackers("lasot", seqs, [TrackerEntry("t", "bsae")], tmp_path)
    assert str(info.value) == f"no results for t/bsae under {tmp_path / 't'} (found: base, c_000)"
    with pytest.raises(MissingResultsError, match="no results of u at all; scripts with results: t"):
        evaluate_trackers("lasot", seqs, [TrackerEntry("u", "c")], tmp_path)


def _record(checkpoint_sha256: str, device: str) -> dict:
    return {"tracker": "t", "config_name": "c", "config": {"test": {"amp": "fp16"}}, "checkpoint": f"/w/{device}.pth",
            "checkpoint_sha256": checkpoint_sha256, "backbone_weights": None, "backbone_weights_sha256": None,
            "device": device, "precision": "fp16"}


def test_run_ids_of_different_models_are_not_averaged(tmp_path):
    seqs = [_lasot_seq("cat-1")]
    for run_id, (digest, device) in enumerate([("aa" * 32, "cuda"), ("aa" * 32, "cpu"), ("bb" * 32, "cuda")]):
        claim_results_dir(tracker_results_dir(tmp_path, "t", "c", run_id), _record(digest, device))
        _write(tmp_path, "t", "c", run_id, seqs[0], GT)
    same_model = TrackerEntry("t", "c", (0, 1))  # repeats of one checkpoint on two devices: merged, both shown
    assert "t/c_000+001" in evaluate_trackers("lasot", seqs, [same_model], tmp_path)
    summary = producer_summary(same_model, tmp_path)
    assert summary.startswith("t/c_000+001: c_000: t/c, checkpoint /w/cuda.pth (sha256 aaaaaaaaaaaa), cuda fp16; ")
    assert "c_001: t/c, checkpoint /w/cpu.pth (sha256 aaaaaaaaaaaa), cpu fp16" in summary
    with pytest.raises(MixedProducersError, match=r"c_000 and c_002 .*\n  checkpoint: /w/cuda.pth \(sha256 "
                                                  r"aaaaaaaaaaaa\) -> /w/cuda.pth \(sha256 bbbbbbbbbbbb\)"):
        evaluate_trackers("lasot", seqs, [TrackerEntry("t", "c", (0, 2))], tmp_path)
