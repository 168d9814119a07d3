"""The three-line Python API (lib/test/tracker/api.py) against the runner on the same synthetic frames."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_eval_helpers import make_env

from lib.config import apply_overrides, load_experiment
from lib.models import build_model, export_inference_checkpoint
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results import box_file
from lib.test.evaluation.running import run_dataset
from lib.test.tracker import resolve_spec
from lib.test.tracker.api import Tracker
from lib.utils.synthetic import SyntheticSpec, write_got10k


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A demo-model export with random weights (seeded) and a one-sequence synthetic video folder."""
    root = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    cfg = load_experiment("lorat", "demo")
    path = export_inference_checkpoint(build_model(cfg, training=False), cfg, root / "demo_final.pth")
    write_got10k(root, "videos", SyntheticSpec(domain="A", num_sequences=1, frames=(12, 12), seed=7))
    return path, root / "videos"


def _rgb(path: str) -> np.ndarray:
    """A frame as a user reads it: OpenCV, converted to RGB."""
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def test_three_lines_track_like_the_runner(exported, tmp_path):
    checkpoint, videos = exported
    env = make_env(tmp_path)
    env.custom_datasets = {"videos": {"format": "got10k", "root": str(videos)}}
    (seq,) = get_dataset("videos", env)
    report = run_dataset(resolve_spec("lorat", "demo", checkpoint=str(checkpoint)), [seq], tmp_path / "results")
    assert not report.failures
    runner_boxes = np.loadtxt(box_file(tmp_path / "results", seq), delimiter=",")

    tracker = Tracker.from_checkpoint(checkpoint, device="cpu", engine="eager")
    assert (tracker.spec.script, tracker.spec.config) == ("lorat", "demo")  # from the export's own config
    x, y, w, h = seq.init_box()
    tracker.initialize(_rgb(seq.frames[0]), (x, y, w, h))
    boxes = [(x, y, w, h)]
    for frame in seq.frames[1:]:
        box, score = tracker.track(_rgb(frame))
        assert isinstance(score, float) and len(box) == 4
        boxes.append(box)
    np.testing.assert_allclose(np.array(boxes), runner_boxes, atol=5e-5)  # result files keep 4 decimals


def test_checkpoints_the_yaml_no_longer_describes_or_without_a_config_are_clear_errors(exported, tmp_path):
    changed = apply_overrides(load_experiment("lorat", "demo"), ["test.window_penalty=0.3"])
    path = export_inference_checkpoint(build_model(changed, training=False), changed, tmp_path / "changed.pth")
    with pytest.raises(ValueError, match=r"test.window_penalty: 0.3 -> .*restore those values in the YAML"):
        Tracker.from_checkpoint(path)
    bare = tmp_path / "bare.pth"
    torch.save(torch.load(exported[0], weights_only=True)["model"], bare)
    with pytest.raises(ValueError, match="records no experiment config.*script='lorat', config='base_224'"):
        Tracker.from_checkpoint(bare)
    tracker = Tracker.from_checkpoint(bare, script="lorat", config="demo")
    with pytest.raises(ValueError, match=r"RGB uint8 arrays of shape \(H, W, 3\)"):
        tracker.initialize(np.zeros((8, 8), dtype=np.uint8), (1, 1, 4, 4))
