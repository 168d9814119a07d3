"""The real VOT toolkit (PyPI vot-toolkit 0.9.0, in its own virtual environment) runs our tracker through TraX on a
generated VOT-format workspace, offline: `vot evaluate` and `vot analysis` finish and report accuracy, and the boxes
the toolkit recorded equal those of our own runner on the same sequences.

The toolkit's environment: $LORAT_VOT_VENV, else ~/.cache/lorat/vot-venv, created on first use the way
`python tracking/vot_setup.py ... --venv DIR` does (install.sh does it once). Without PyPI access and without that
environment the toolkit test is skipped, saying so.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval_helpers import make_env

from lib.config import load_experiment
from lib.models import build_model, export_inference_checkpoint
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results import box_file
from lib.test.evaluation.running import run_dataset
from lib.test.integrations.vot_workspace import (
    TOOLKIT_PINS,
    create_toolkit_venv,
)
from lib.test.tracker import resolve_spec
from lib.utils.synthetic import SyntheticSpec, write_got10k

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("LORAT_VOT_VENV", Path.home() / ".cache" / "lorat" / "vot-venv"))
STACK = """title: local bounding-box stack, no dataset key so nothing is downloaded
experiments:
  unsupervised:
    type: unsupervised
    repetitions: 1
    analyses:
      - type: average_accuracy
        name: accuracy
        burnin: 1
"""


@pytest.fixture(scope="module")
def vot() -> Path:
    try:
        return create_toolkit_venv(VENV)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(VENV, ignore_errors=True)
        pytest.skip(f"SKIPPED LOUDLY: no VOT toolkit environment at {VENV} and installing {' '.join(TOOLKIT_PINS)} "
                    f"from PyPI failed ({exc}); run install.sh or set LORAT_VOT_VENV")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An export of the demo model with seeded random weights."""
    torch.manual_seed(0)
    cfg = load_experiment("lorat", "demo")
    path = tmp_path_factory.mktemp("vot_model") / "demo_final.pth"
    return export_inference_checkpoint(build_model(cfg, training=False), cfg, path)


def _write_vot_sequences(root: Path) -> None:
    """VOT toolkit layout: list.txt, <seq>/{sequence, groundtruth.txt, color/%08d.jpg} (boxes as x,y,w,h)."""
    write_got10k(root / "got", "val", SyntheticSpec(domain="A", num_sequences=2, frames=(8, 10), seed=21,
                                                    exit_probability=0.0))
    names = []
    for k, seq in enumerate(sorted(p for p in (root / "got" / "val").iterdir() if p.is_dir())):
        name = f"seq{k}"
        (root / "sequences" / name / "color").mkdir(parents=True)
        for frame in seq.glob("*.jpg"):
            shutil.copy(frame, root / "sequences" / name / "color" / frame.name)
        shutil.copy(seq / "groundtruth.txt", root / "sequences" / name / "groundtruth.txt")
        (root / "sequences" / name / "sequence").write_text(
            f"channels.color=color/%08d.jpg\nformat=default\nfps=30\nname={name}\n")
        names.append(name)
    (root / "sequences" / "list.txt").write_text("".join(f"{n}\n" for n in names))


def _read_toolkit_trajectory(vot: Path, path: Path) -> list[list[float]]:
    """The rectangles of a toolkit result file, read by the toolkit's own reader (its binary format)."""
    code = ("import json, sys; from vot.region.io import read_trajectory; from vot.region import Rectangle\n"
            "print(json.dumps([[r.x, r.y, r.width, r.height] if isinstance(r, Rectangle) else [float('nan')] * 4 "
            "for r in read_trajectory(sys.argv[1])]))")
    done = subprocess.run([str(vot.parent / "python"), "-c", code, str(path)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def test_vot_evaluate_and_analysis_run_our_tracker_like_our_runner(vot, checkpoint, tmp_path):
    workspace = tmp_path / "ws"
    _write_vot_sequences(workspace)
    (tmp_path / "stack.yaml").write_text(STACK)
    setup = subprocess.run([sys.executable, "tracking/vot_setup.py", "--workspace", str(workspace), "--script",
                            "lorat", "--config", "demo", "--checkpoint", str(checkpoint), "--stack",
                            str(tmp_path / "stack.yaml")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert setup.returncode == 0, setup.stderr

    def toolkit(*args: str) -> str:
        done = subprocess.run([str(vot), *args, "--workspace", str(workspace), "lorat_demo"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    assert "Evaluation concluded" in toolkit("evaluate")  # the toolkit exits 0 even when a tracker crashed
    toolkit("analysis")
    (analysis,) = (workspace / "analysis").glob("*.json")
    report = json.loads(analysis.read_text())["results"]["unsupervised"]
    assert report["parameters"]["analyses"][0]["name"] == "accuracy"
    (((accuracy,),),) = report["results"]
    assert 0.0 < accuracy < 1.0  # random weights: overlaps neither perfect nor empty

    env = make_env(tmp_path)
    env.custom_datasets = {"vot_seqs": {"format": "vot", "root": str(workspace / "sequences")}}
    sequences = get_dataset("vot_seqs", env)
    assert not run_dataset(resolve_spec("lorat", "demo", checkpoint=str(checkpoint)), sequences,
                           tmp_path / "ours").failures
    for seq in sequences:
        recorded = workspace / "results" / "lorat_demo" / "unsupervised" / seq.name / f"{seq.name}_001.bin"
        toolkit_boxes = np.array(_read_toolkit_trajectory(vot, recorded))
        ours = np.loadtxt(box_file(tmp_path / "ours", seq), delimiter=",")
        assert toolkit_boxes.shape == ours.shape
        np.testing.assert_allclose(toolkit_boxes[1:], ours[1:], atol=1e-3)  # row 0: the toolkit's init marker


def test_vot_setup_keeps_the_users_config_and_replaces_only_its_own_entry(checkpoint, tmp_path, capsys):
    """No toolkit needed: the files vot_setup.py writes, and the generated VOT sequences read as format `vot`."""
    workspace = tmp_path / "ws"
    _write_vot_sequences(workspace)
    user_config = "registry:\n- ./trackers.ini\nstack: vot2020/shortterm\nsequences: /my/data\n"
    (workspace / "config.yaml").write_text(user_config)
    users_entry = "# my trackers\n[other]\nlabel = Other\nprotocol = trax\ncommand = run_other --fast\n"
    (workspace / "trackers.ini").write_text(users_entry)
    spec = importlib.util.spec_from_file_location("vot_setup", ROOT / "tracking" / "vot_setup.py")
    vot_setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vot_setup)

    def setup(*extra: str) -> int:
        return vot_setup.main(["--workspace", str(workspace), "--config", "demo", "--checkpoint", str(checkpoint),
                               *extra])

    assert setup() == 0
    capsys.readouterr()
    assert setup("--device", "cuda:1") == 0
    printed = capsys.readouterr().out
    assert "kept" in printed and f"vot evaluate --workspace {workspace} lorat_demo" in printed
    assert (workspace / "config.yaml").read_text() == user_config
    ini = (workspace / "trackers.ini").read_text()
    assert ini.count("[lorat_demo]") == 1 and "--device cuda:1" in ini and "--device cpu" not in ini
    assert ini.startswith(users_entry)
    assert f"command = {sys.executable} -m lib.test.integrations.vot_trax --script lorat --config demo " in ini
    with pytest.raises(SystemExit) as refused:  # an unknown engine is refused by the shared tracker options
        setup("--engine", "nope")
    assert refused.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err

    env = make_env(tmp_path)
    env.custom_datasets = {"vot_seqs": {"format": "vot", "root": str(workspace / "sequences")}}
    sequences = get_dataset("vot_seqs", env)
    assert [s.name for s in sequences] == ["seq0", "seq1"]
    np.testing.assert_allclose(sequences[1].ground_truth_rect,
                               np.loadtxt(workspace / "sequences" / "seq1" / "groundtruth.txt", delimiter=","))
    assert sequences[1].frames[0].endswith("seq1/color/00000001.jpg")
