"""The got10k toolkit's ExperimentGOT10k runs our tracker (lib/test/integrations/got10k_toolkit.py) on a synthetic
GOT-10k val split; its scores equal our own analysis of the result files it wrote."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from got10k.experiments import ExperimentGOT10k
from test_eval_helpers import make_env

from lib.config import load_experiment
from lib.models import build_model, export_inference_checkpoint
from lib.test.analysis.metrics import evaluate_dataset
from lib.test.evaluation.analysis import sequence_gt
from lib.test.evaluation.datasets import get_dataset
from lib.test.integrations.got10k_toolkit import Got10kTracker
from lib.utils.synthetic import SyntheticSpec, write_got10k


def test_experiment_got10k_scores_equal_our_analysis(tmp_path):
    torch.manual_seed(0)
    cfg = load_experiment("lorat", "demo")
    checkpoint = export_inference_checkpoint(build_model(cfg, training=False), cfg, tmp_path / "demo_final.pth")
    data = tmp_path / "got10k"
    write_got10k(data, "val", SyntheticSpec(domain="A", num_sequences=3, frames=(8, 10), seed=11))
    tracker = Got10kTracker.from_checkpoint(checkpoint)
    assert tracker.name == "lorat_demo" and tracker.is_deterministic
    experiment = ExperimentGOT10k(str(data), subset="val", result_dir=str(tmp_path / "results"),
                                  report_dir=str(tmp_path / "reports"))
    with contextlib.redirect_stdout(io.StringIO()):
        experiment.run(tracker)
        report = experiment.report([tracker.name])[tracker.name]["overall"]

    sequences = get_dataset("got10k_val", make_env(tmp_path, got10k_path=str(data)))
    results = {s.name: [np.loadtxt(tmp_path / "results" / "GOT-10k" / "lorat_demo" / s.name / f"{s.name}_001.txt",
                                   delimiter=",")] for s in sequences}
    ours = evaluate_dataset("got10k_val", results, [sequence_gt(s) for s in sequences])["got10k"]
    assert 0.0 < report["ao"] < 1.0  # random weights: neither perfect nor empty
    assert ours["AO"] == pytest.approx(100 * report["ao"], abs=1e-9)
    assert ours["SR0.5"] == pytest.approx(100 * report["sr"], abs=1e-9)
