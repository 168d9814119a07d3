"""Training runs started from other scripts (the demo and its backbone pretraining): tracking/train.py in a child
process on the CPU, exactly as a user would type it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lib.utils.paths import PROJECT_ROOT as ROOT, RunPaths


def run_step(command: list[str]) -> None:
    """Print and run `command` in the repository root; a failure ends the calling script with the command."""
    print("$", " ".join(command), flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise SystemExit(f"step failed: {' '.join(command)}")


def train_on_cpu(config: str, out: Path, overrides: list[str], init: Path | None = None) -> Path:
    """Train experiments/lorat/<config>.yaml into `out` (paths from `out`/train_local.py); returns the final
    merged export. An interrupted run resumes from its last checkpoint when called again."""
    command = [sys.executable, "tracking/train.py", "--mode", "single", "--script", "lorat", "--config", config,
               "--save_dir", str(out), "--env_file", str(out / "train_local.py"), "--cpu"]
    if init is not None:
        command += ["--init_checkpoint", str(init)]
    run_step(command + ["--set", *overrides])
    return RunPaths.for_run(out, "lorat", config).final_export(config)


def write_local_files(data_dir: Path, out: Path) -> None:
    """train_local.py and test_local.py in `out`, pointing at `data_dir` and saving under `out`."""
    run_step([sys.executable, "tracking/create_default_local_file.py", "--workspace_dir", str(ROOT), "--data_dir",
              str(data_dir), "--save_dir", str(out), "--train_local", str(out / "train_local.py"),
              "--test_local", str(out / "test_local.py"), "--force"])
