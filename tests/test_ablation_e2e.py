"""One short end-to-end run per family of the ablation and timm-backbone experiments: train a few steps through
`lib.train.run_training` (the code behind tracking/train.py), load the final export into the tracker, track one
synthetic sequence and score it with the OPE analysis."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from lib.config import apply_overrides, load_experiment
from lib.models.backbone import VIT_SPECS
from lib.test.analysis.metrics import SequenceGT, evaluate_ope
from lib.test.tracker import TrackerSpec
from lib.test.tracker.lorat import build_tracker
from lib.train import run_training
from lib.utils.paths import RunPaths
from lib.utils.synthetic import SyntheticSpec, generate_sequence, write_got10k

ROOT = Path(__file__).resolve().parents[1]
FAST = ["train.epochs=1", "train.batch_size=4", "data.samples_per_epoch=8", "data.num_workers=0",
        "train.warmup_epochs=0.5", "train.compile=false", "train.amp=fp32", "test.amp=fp32", "data.val=[]",
        "data.train=[{name: synthetic_b_train, weight: 1}]"]
TINY = ["model.backbone=vit_demo_p14", "model.template_size=56", "model.search_size=112"]
# (script, config, overrides): one per family; the timm one runs a 2-block MAE ViT-B/16 from a generated file
RUNS = {"peft_adapter": ("lorat_ablation", "base_224_adapter", TINY),
        "module_convhead": ("lorat_ablation", "base_224_convhead", TINY),
        "embedding_sinusoidal": ("lorat_ablation", "large_224_emb_sinusoidal", TINY),
        "timm_mae": ("lorat_timm", "base_256_mae", [])}


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e_data")
    write_got10k(root / "synthetic" / "B", "train", SyntheticSpec(domain="B", num_sequences=3, frames=(8, 10), seed=5))
    out = subprocess.run([sys.executable, "tracking/create_default_local_file.py", "--workspace_dir", str(ROOT),
                          "--data_dir", str(root), "--save_dir", str(root / "output"),
                          "--train_local", str(root / "train_local.py"), "--test_local", str(root / "test_local.py")],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return root / "train_local.py"


@pytest.mark.parametrize("family", sorted(RUNS))
def test_train_track_score(family, env_file, tmp_path, monkeypatch):
    script, config, overrides = RUNS[family]
    backbone = ["--backbone_weights", "none"]
    if family == "timm_mae":
        spec = VIT_SPECS["timm_mae_vitb16"]
        monkeypatch.setitem(VIT_SPECS, "timm_mae_vitb16", dataclasses.replace(spec, overrides=(("depth", 2),)))
        torch.manual_seed(0)
        mae = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, depth=2)
        save_file({k: v.contiguous() for k, v in mae.state_dict().items()}, str(tmp_path / "mae.safetensors"))
        backbone = ["--backbone_weights", str(tmp_path / "mae.safetensors")]
    assert run_training.main(["--script", script, "--config", config, "--save_dir", str(tmp_path),
                              "--env_file", str(env_file), "--cpu", *backbone,
                              "--set", *FAST, *overrides]) == 0
    paths = RunPaths.for_run(tmp_path, script, config)
    export = paths.final_export(config)
    assert export.is_file() and "parameters trainable" in paths.log_file.read_text()

    cfg = apply_overrides(load_experiment(script, config), [*FAST, *overrides])
    weights = None if family != "timm_mae" else str(tmp_path / "mae.safetensors")
    tracker = build_tracker(cfg, TrackerSpec(script, config, checkpoint=str(export), backbone_weights=weights))
    frames, boxes, _ = generate_sequence(SyntheticSpec(domain="B", num_sequences=1, frames=(6, 6), seed=9), 0)
    tracker.initialize(frames[0], boxes[0])
    predictions = [boxes[0]] + [tracker.track(frame)[0] for frame in frames[1:]]
    height, width = frames[0].shape[:2]
    for box in predictions:
        assert np.all(np.isfinite(box)) and box[0] >= 0 and box[1] >= 0
        assert box[0] + box[2] <= width + 1e-6 and box[1] + box[3] <= height + 1e-6
    scores = evaluate_ope({"seq": [np.stack(predictions)]}, [SequenceGT("seq", boxes)])
    assert 0.0 <= scores["AUC"] <= 100.0 and np.isfinite(scores["Precision"])
