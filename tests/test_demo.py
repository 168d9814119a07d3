"""`python tracking/demo.py --quick`: every step of the out-of-the-box pipeline runs, as a user would run it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_demo_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "tracking/demo.py", "--quick", "--out", str(tmp_path / "out"),
                          "--data_dir", str(tmp_path / "data")], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    table = out.stdout[out.stdout.index("Tracker"):]
    for row in ("stage-1 LoRAT on A", "static box on A", "OpenCV MIL on A", "OpenCV CSRT on A", "OpenCV KCF on A",
                "stage-1 LoRAT on B", "LoRA-tuned LoRAT on B", "static box on B", "OpenCV MIL on B",
                "OpenCV CSRT on B", "OpenCV KCF on B"):
        assert row in table
    assert "each stage trains" in out.stdout
    assert "LoRA-tuned LoRAT on B, AUC points: " in out.stdout and " vs OpenCV CSRT" in out.stdout
    for domain in ("a", "b"):
        plots = tmp_path / "out" / "test" / "result_plots" / f"synthetic_{domain}_test"
        assert (plots / "success_plot.png").stat().st_size > 0
    stage1 = tmp_path / "out" / "checkpoints" / "train" / "lorat" / "demo" / "demo_final.pth"
    stage2 = tmp_path / "out" / "checkpoints" / "train" / "lorat" / "demo_lora" / "demo_lora_official.bin"
    assert stage1.is_file() and stage2.is_file()
    # the static baseline repeats the first box: its result file has one identical line per frame
    static = tmp_path / "out" / "test" / "tracking_results" / "static" / "demo" / "synthetic_a_test"
    lines = next(static.glob("*[0-9].txt")).read_text().splitlines()
    assert len(set(lines)) == 1 and len(lines) > 1
