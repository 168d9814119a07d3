"""Results provenance: producer.json records what produced a results folder; other producers are never mixed in."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from lib.config import ExperimentConfig, load_experiment
from lib.test.evaluation.data import Sequence
from lib.test.evaluation.results import (
    ResultsConflictError, box_file, claim_results_dir, producer_differences, read_producer, write_sequence_result,
)
from lib.test.tracker import NO_WEIGHTS, TrackerSpec, file_sha256, producer_record, resolve_spec

SEQ = Sequence("s1", ("a.jpg", "b.jpg"), "otb", np.array([[1., 2., 3., 4.]] * 2))


def test_file_sha256_matches_known_digests(tmp_path):
    (tmp_path / "abc").write_bytes(b"abc")  # FIPS 180-2 example
    assert file_sha256(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    data = np.random.default_rng(0).bytes(3 * 2 ** 20 + 17)  # several read chunks
    (tmp_path / "big").write_bytes(data)
    assert file_sha256(tmp_path / "big") == hashlib.sha256(data).hexdigest()


def _lorat_spec(tmp_path, weights: bytes, device: str = "cpu") -> TrackerSpec:
    path = tmp_path / f"ckpt_{hashlib.md5(weights).hexdigest()[:6]}.pth"
    path.write_bytes(weights)
    return TrackerSpec("lorat", "demo", str(path), None, device)


def test_record_of_a_learned_tracker(tmp_path):
    cfg = load_experiment("lorat", "demo")
    gpu = producer_record(_lorat_spec(tmp_path, b"weights A", "cuda:1"))
    assert gpu["checkpoint_sha256"] == hashlib.sha256(b"weights A").hexdigest()
    assert gpu["checkpoint"] == str((tmp_path / f"ckpt_{hashlib.md5(b'weights A').hexdigest()[:6]}.pth").resolve())
    assert ExperimentConfig.from_dict(gpu["config"]) == cfg and gpu["backbone_weights"] is None
    assert (gpu["device"], gpu["precision"]) == ("cuda", cfg.test.amp)
    assert producer_differences(gpu, producer_record(_lorat_spec(tmp_path, b"weights A", "cuda:0"))) == []
    cpu = producer_record(_lorat_spec(tmp_path, b"weights A", "cpu"))
    assert (cpu["device"], cpu["precision"]) == ("cpu", "fp32")  # the tracker runs fp32 on the CPU
    assert producer_differences(gpu, cpu) == ["device: cuda -> cpu", f"precision: {cfg.test.amp} -> fp32"]


def test_record_of_a_baseline_says_it_has_no_weights():
    record = producer_record(TrackerSpec("static", "none", device="cuda"))
    assert (record["tracker"], record["config_name"], record["checkpoint"]) == ("static", "none", NO_WEIGHTS)
    assert record["config"] is None and record["checkpoint_sha256"] is None and record["device"] is None


def test_config_differences_are_named_by_key():
    old = {"tracker": "lorat", "config": {"test": {"window_penalty": 0.45, "amp": "fp16"}, "name": "x"}}
    new = {"tracker": "lorat", "config": {"test": {"window_penalty": 0.5, "amp": "fp16"}, "name": "x"}}
    assert producer_differences(old, new) == ["config.test.window_penalty: 0.45 -> 0.5"]


def test_same_producer_resumes_another_is_refused_and_force_redoes(tmp_path):
    results_dir = tmp_path / "results" / "lorat" / "demo"
    first = producer_record(_lorat_spec(tmp_path, b"weights A"))
    claim_results_dir(results_dir, first)
    assert read_producer(results_dir) == first
    write_sequence_result(results_dir, SEQ, SEQ.ground_truth_rect, np.zeros(2))
    claim_results_dir(results_dir, producer_record(_lorat_spec(tmp_path, b"weights A")))  # same producer: resume
    assert box_file(results_dir, SEQ).is_file()

    second = producer_record(_lorat_spec(tmp_path, b"weights B"))
    with pytest.raises(ResultsConflictError) as info:
        claim_results_dir(results_dir, second)
    message = str(info.value)
    assert f"(sha256 {first['checkpoint_sha256'][:12]}) -> " in message
    assert f"(sha256 {second['checkpoint_sha256'][:12]})" in message
    assert "--runid N" in message and "--force" in message
    assert box_file(results_dir, SEQ).is_file() and read_producer(results_dir) == first  # nothing touched

    claim_results_dir(results_dir, second, force=True)
    assert not box_file(results_dir, SEQ).exists()
    assert json.loads((results_dir / "producer.json").read_text()) == second


def test_results_without_a_record_are_refused(tmp_path):
    results_dir = tmp_path / "static" / "none"
    (results_dir / "otb").mkdir(parents=True)  # an empty folder is simply claimed
    claim_results_dir(results_dir, producer_record(TrackerSpec("static", "none")))
    (results_dir / "producer.json").unlink()
    write_sequence_result(results_dir, SEQ, SEQ.ground_truth_rect, np.zeros(2))  # as before producer records
    with pytest.raises(ResultsConflictError, match=r"2 result file\(s\) \(e.g. otb/s1.txt\) but no producer.json"):
        claim_results_dir(results_dir, producer_record(TrackerSpec("static", "none")))


def test_an_unreadable_record_is_refused_and_force_replaces_it(tmp_path):
    results_dir = tmp_path / "static" / "none"
    results_dir.mkdir(parents=True)
    (results_dir / "producer.json").write_text('{"tracker": "static", ')  # cut short by another tool
    record = producer_record(TrackerSpec("static", "none"))
    with pytest.raises(ResultsConflictError, match="producer.json: not a valid producer record"):
        claim_results_dir(results_dir, record)
    claim_results_dir(results_dir, record, force=True)
    assert read_producer(results_dir) == record


def test_engine_is_recorded_and_another_engine_is_another_producer(tmp_path):
    eager = producer_record(_lorat_spec(tmp_path, b"weights A"))
    int8 = producer_record(replace(_lorat_spec(tmp_path, b"weights A"), engine="int8"))
    assert (eager["engine"], eager["precision"]) == ("eager", "fp32")
    assert (int8["engine"], int8["precision"]) == ("int8", "int8")
    assert producer_differences(eager, int8) == ["engine: eager -> int8", "precision: fp32 -> int8"]
    results_dir = tmp_path / "results"
    claim_results_dir(results_dir, eager)
    (results_dir / "seq.txt").write_text("1,2,3,4\n")  # eager has finished a sequence
    with pytest.raises(ResultsConflictError, match="engine: eager -> int8"):
        claim_results_dir(results_dir, int8)


def test_a_record_without_results_is_replaced(tmp_path):
    """A run that failed before finishing any sequence (e.g. on a checkpoint that does not load) leaves only its
    record: the corrected command claims the folder instead of being refused (nothing would be mixed)."""
    first = producer_record(_lorat_spec(tmp_path, b"weights A"))
    second = producer_record(_lorat_spec(tmp_path, b"weights B"))
    results_dir = tmp_path / "results"
    claim_results_dir(results_dir, first)
    claim_results_dir(results_dir, second)
    assert read_producer(results_dir)["checkpoint_sha256"] == second["checkpoint_sha256"]


def test_record_written_before_engines_reads_as_eager(tmp_path):
    current = producer_record(_lorat_spec(tmp_path, b"weights A"))
    old = {k: v for k, v in current.items() if k != "engine"}
    (tmp_path / "producer.json").write_text(json.dumps(old))
    assert read_producer(tmp_path)["engine"] == "eager"
    claim_results_dir(tmp_path, current)  # the same producer: resumed, not refused
    baseline = {k: v for k, v in producer_record(TrackerSpec("static", "none")).items() if k != "engine"}
    (tmp_path / "producer.json").write_text(json.dumps(baseline))
    assert read_producer(tmp_path)["engine"] is None


def test_engine_names_are_checked_before_any_work():
    with pytest.raises(ValueError, match="unknown engine 'fp8'"):
        resolve_spec("lorat", "demo", "random", engine="fp8")
    with pytest.raises(ValueError, match="baseline has no model to run with engine 'int8'"):
        resolve_spec("static", "none", engine="int8")


def test_record_written_before_a_new_config_option_is_the_same_producer(tmp_path):
    """A config option added later (with a default equal to the old behaviour) must not turn an existing results
    folder into "another producer": the recorded config is read with today's schema."""
    current = producer_record(_lorat_spec(tmp_path, b"weights A"))
    old = json.loads(json.dumps(current))
    del old["config"]["model"]["head"]  # as written before the head became configurable
    (tmp_path / "producer.json").write_text(json.dumps(old))
    (tmp_path / "seq.txt").write_text("1,2,3,4\n")
    claim_results_dir(tmp_path, current)  # resumed, not refused
    changed = json.loads(json.dumps(current))
    changed["config"]["model"]["head"] = "conv"
    with pytest.raises(ResultsConflictError, match="config.model.head: mlp -> conv"):
        claim_results_dir(tmp_path, changed)
