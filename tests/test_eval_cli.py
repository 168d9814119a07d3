"""End to end like a user: tracking/test.py (static tracker) -> analysis_results.py --json -> pack_results.py;
tracking/test.py with LoRAT weights from --env_file's save_dir and results that record their producer.
The scripts' main() runs in this process (the `run_cli` fixture); the CUDA test starts a real process, since
CUDA_VISIBLE_DEVICES only takes effect in a fresh interpreter."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from lib.config import load_experiment
from lib.models import build_model, export_inference_checkpoint
from lib.utils.paths import RunPaths
from test_eval_helpers import make_env, make_got10k_split, write_local_file

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def _static_iou(w: float, h: float, dx: float, dy: float) -> float:
    """IoU of a w x h box with itself shifted by (dx, dy) (hand formula)."""
    inter = max(w - dx, 0) * max(h - dy, 0)
    return inter / (2 * w * h - inter)


def test_test_py_then_analysis_json_then_pack(tmp_path, run_cli):
    got10k = tmp_path / "got10k"
    make_got10k_split(got10k, "val", {"v1": 5, "v2": 4})
    make_got10k_split(got10k, "test", {"t1": 3, "t2": 2}, full_gt=False)
    local = tmp_path / "local.py"
    write_local_file(local, make_env(tmp_path, got10k_path=str(got10k)))
    frame = got10k / "val" / "v2" / "00000003.jpg"
    original = frame.read_bytes()
    frame.write_bytes(b"broken")

    first = run_cli("test", "static", "none", "--dataset_name", "got10k_val", "--env_file", str(local))
    assert first.returncode == 1, first.stdout + first.stderr
    assert "FAILED got10k_val/v2" in first.stderr and "00000003.jpg" in first.stderr

    out_json = tmp_path / "scores.json"
    missing = run_cli("analysis_results", "--script", "static", "--config", "none", "--dataset",
                      "got10k_val", "--json", str(out_json), "--env_file", str(local))
    assert missing.returncode == 1 and "1 missing: v2" in missing.stderr and not out_json.exists()

    frame.write_bytes(original)
    second = run_cli("test", "static", "none", "--dataset_name", "got10k_val", "--env_file", str(local))
    assert second.returncode == 0, second.stderr
    assert "finished 1, skipped 1 already finished, failed 0" in second.stdout

    analysis = run_cli("analysis_results", "--script", "static", "--config", "none", "--dataset",
                       "got10k_val", "--json", str(out_json), "--env_file", str(local))
    assert analysis.returncode == 0, analysis.stderr
    scores = json.loads(out_json.read_text())
    # GT moves by (1, 0.5) px per frame from (3 + k, 4, 9 + k, 7); the last frame has cover 0; frame 1 dropped.
    ious = [_static_iou(9.0, 7.0, i, 0.5 * i) for i in (1, 2, 3)] + [_static_iou(10.0, 7.0, i, 0.5 * i) for i in (1, 2)]
    assert set(scores) == {"static/none"}
    np.testing.assert_allclose(scores["static/none"]["AO"], 100 * np.mean(ious), rtol=1e-9)
    np.testing.assert_allclose(scores["static/none"]["SR0.5"], 100 * np.mean(np.array(ious) > 0.5), rtol=1e-9)
    assert "static/none" in analysis.stdout and "AO" in analysis.stdout
    assert "produced by static/none: static/none, checkpoint none (baseline without learned weights)" in analysis.stdout

    typo = run_cli("analysis_results", "--script", "static", "--config", "nnoe", "--dataset", "got10k_val",
                   "--env_file", str(local))
    static_dir = tmp_path / "out" / "test" / "tracking_results" / "static"
    assert typo.returncode == 1 and f"no results for static/nnoe under {static_dir} (found: none)" in typo.stderr

    run_test = run_cli("test", "static", "none", "--dataset_name", "got10k_test", "--env_file", str(local),
                       "--runid", "0")
    assert run_test.returncode == 0, run_test.stderr
    pack = run_cli("pack_results", "--script", "static", "--config", "none", "--dataset", "got10k_test",
                   "--run_ids", "0", "--env_file", str(local))
    assert pack.returncode == 0, pack.stderr
    zip_path = tmp_path / "out" / "test" / "packed_results" / "static_none_000_got10k_test.zip"
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == ["t1/t1_001.txt", "t1/t1_time.txt", "t2/t2_001.txt", "t2/t2_time.txt"]
        assert archive.read("t2/t2_001.txt").decode() == "4.0000,4.0000,10.0000,7.0000\n" * 2


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    local = tmp_path / "local.py"
    write_local_file(local, make_env(tmp_path, got10k_path=str(tmp_path / "got10k")))
    make_got10k_split(tmp_path / "got10k", "val", {"v1": 2})
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU visible, whatever this machine has
    result = _run("tracking/test.py", "static", "none", "--dataset_name", "got10k_val", "--env_file", str(local),
                  "--device", "cuda", env=env)
    assert result.returncode != 0 and "no CUDA GPU" in result.stderr and "--device cpu" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "test" / "tracking_results").exists()


def _export(cfg, path: Path, bias: float) -> str:
    """An inference export of the demo model with the classifier bias set to `bias`; returns its SHA-256."""
    model = build_model(cfg, training=False)
    with torch.no_grad():
        model.head.cls_mlp.layers[2].bias.fill_(bias)
    export_inference_checkpoint(model, cfg, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lorat_weights_from_env_file_and_results_that_know_their_producer(tmp_path, run_cli):
    make_got10k_split(tmp_path / "got10k", "val", {"v1": 3, "v2": 2})
    env = make_env(tmp_path, got10k_path=str(tmp_path / "got10k"))
    local = tmp_path / "local.py"
    write_local_file(local, env)
    cfg = load_experiment("lorat", "demo")
    final = RunPaths.for_run(env.save_dir, "lorat", "demo").final_export("demo")  # what the trainer writes
    final.parent.mkdir(parents=True)
    first_hash = _export(cfg, final, 0.25)
    command = ("test", "lorat", "demo", "--dataset_name", "got10k_val", "--env_file", str(local))

    first = run_cli(*command)  # no --checkpoint: the trained model under the env file's save_dir
    assert first.returncode == 0, first.stdout + first.stderr
    assert "finished 2, skipped 0 already finished, failed 0" in first.stdout
    results_dir = Path(env.results_path) / "lorat" / "demo"
    producer = json.loads((results_dir / "producer.json").read_text())
    assert (producer["checkpoint"], producer["checkpoint_sha256"]) == (str(final.resolve()), first_hash)
    assert (producer["tracker"], producer["config_name"], producer["device"], producer["precision"]) == \
        ("lorat", "demo", "cpu", "fp32")
    assert producer["config"]["test"]["window_penalty"] == cfg.test.window_penalty
    v1 = results_dir / "got10k_val" / "v1.txt"
    boxes = v1.read_bytes()

    second_hash = _export(cfg, final, -0.5)  # retrained: other weights at the same path
    refused = run_cli(*command)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert first_hash[:12] in refused.stderr and second_hash[:12] in refused.stderr
    assert "--runid N" in refused.stderr and "--force" in refused.stderr
    assert v1.read_bytes() == boxes  # the old results are kept, not mixed

    forced = run_cli(*command, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "finished 2, skipped 0 already finished, failed 0" in forced.stdout
    assert json.loads((results_dir / "producer.json").read_text())["checkpoint_sha256"] == second_hash


def test_engine_and_batch_sequences_flags(tmp_path, run_cli):
    got10k = tmp_path / "got10k"
    make_got10k_split(got10k, "val", {"v1": 5, "v2": 3, "v3": 4})
    local = tmp_path / "local.py"
    write_local_file(local, make_env(tmp_path, got10k_path=str(got10k)))
    command = ("test", "lorat", "demo", "--dataset_name", "got10k_val", "--env_file", str(local),
               "--checkpoint", "random", "--batch_sequences", "2")
    int8 = run_cli(*command, "--engine", "int8")
    assert int8.returncode == 0, int8.stderr
    results_dir = tmp_path / "out" / "test" / "tracking_results" / "lorat" / "demo"
    producer = json.loads((results_dir / "producer.json").read_text())
    assert (producer["engine"], producer["precision"]) == ("int8", "int8")
    assert len((results_dir / "got10k_val" / "v1.txt").read_text().splitlines()) == 5
    eager = run_cli(*command)  # the default engine is another producer: refused, not mixed in
    assert eager.returncode != 0 and "engine: int8 -> eager" in eager.stderr
