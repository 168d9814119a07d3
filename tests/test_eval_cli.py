"""End to end like a user: tracking/test.py (static tracker) -> analysis_results.py --json -> pack_results.py."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from test_eval_helpers import make_env, make_got10k_split, write_local_file

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def _static_iou(w: float, h: float, dx: float, dy: float) -> float:
    """IoU of a w x h box with itself shifted by (dx, dy) (hand formula)."""
    inter = max(w - dx, 0) * max(h - dy, 0)
    return inter / (2 * w * h - inter)


def test_test_py_then_analysis_json_then_pack(tmp_path):
    got10k = tmp_path / "got10k"
    make_got10k_split(got10k, "val", {"v1": 5, "v2": 4})
    make_got10k_split(got10k, "test", {"t1": 3, "t2": 2}, full_gt=False)
    local = tmp_path / "local.py"
    write_local_file(local, make_env(tmp_path, got10k_path=str(got10k)))
    frame = got10k / "val" / "v2" / "00000003.jpg"
    original = frame.read_bytes()
    frame.write_bytes(b"broken")

    first = _run("tracking/test.py", "static", "none", "--dataset_name", "got10k_val", "--env_file", str(local))
    assert first.returncode == 1, first.stdout + first.stderr
    assert "FAILED got10k_val/v2" in first.stderr and "00000003.jpg" in first.stderr

    out_json = tmp_path / "scores.json"
    missing = _run("tracking/analysis_results.py", "--script", "static", "--config", "none", "--dataset",
                   "got10k_val", "--json", str(out_json), "--env_file", str(local))
    assert missing.returncode == 1 and "1 missing: v2" in missing.stderr and not out_json.exists()

    frame.write_bytes(original)
    second = _run("tracking/test.py", "static", "none", "--dataset_name", "got10k_val", "--env_file", str(local))
    assert second.returncode == 0, second.stderr
    assert "finished 1, skipped 1 already finished, failed 0" in second.stdout

    analysis = _run("tracking/analysis_results.py", "--script", "static", "--config", "none", "--dataset",
                    "got10k_val", "--json", str(out_json), "--env_file", str(local))
    assert analysis.returncode == 0, analysis.stderr
    scores = json.loads(out_json.read_text())
    # GT moves by (1, 0.5) px per frame from (3 + k, 4, 9 + k, 7); the last frame has cover 0; frame 1 dropped.
    ious = [_static_iou(9.0, 7.0, i, 0.5 * i) for i in (1, 2, 3)] + [_static_iou(10.0, 7.0, i, 0.5 * i) for i in (1, 2)]
    assert set(scores) == {"static/none"}
    np.testing.assert_allclose(scores["static/none"]["AO"], 100 * np.mean(ious), rtol=1e-9)
    np.testing.assert_allclose(scores["static/none"]["SR0.5"], 100 * np.mean(np.array(ious) > 0.5), rtol=1e-9)
    assert "static/none" in analysis.stdout and "AO" in analysis.stdout

    run_test = _run("tracking/test.py", "static", "none", "--dataset_name", "got10k_test", "--env_file", str(local),
                    "--runid", "0")
    assert run_test.returncode == 0, run_test.stderr
    pack = _run("tracking/pack_results.py", "--script", "static", "--config", "none", "--dataset", "got10k_test",
                "--run_ids", "0", "--env_file", str(local))
    assert pack.returncode == 0, pack.stderr
    zip_path = tmp_path / "out" / "test" / "packed_results" / "static_none_000_got10k_test.zip"
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == ["t1/t1_001.txt", "t1/t1_time.txt", "t2/t2_001.txt", "t2/t2_time.txt"]
        assert archive.read("t2/t2_001.txt").decode() == "4.0000,4.0000,10.0000,7.0000\n" * 2
