"""The demo's shipped backbone: written back from a trained LoRAT model exactly, loaded through the real backbone
path, small enough to ship, and reproduced by tracking/pretrain_demo_backbone.py."""
from __future__ import annotations

import pickle

import pytest
import torch

from lib.config import apply_overrides, load_experiment
from lib.models import build_model
from lib.models.backbone import DEMO_BACKBONE_FILE, create_vit, default_weights_path, vit_state_from_lorat
from lib.utils.paths import PRETRAINED_DIR

BACKBONE_PARTS = ("patch_embed.", "blocks.", "norm.", "pos_embed")


def nudged_demo_model() -> torch.nn.Module:
    """The pretraining model (random weights) moved off its initialisation, as training would."""
    model = build_model(load_experiment("lorat", "demo_pretrain"), training=False)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model


def test_written_backbone_rebuilds_the_same_lorat_backbone(tmp_path):
    model = nudged_demo_model()
    path = tmp_path / "backbone.pth"
    torch.save(vit_state_from_lorat(model, create_vit("vit_demo_p14_synthetic_init")), path)
    shipped_cfg = apply_overrides(load_experiment("lorat", "demo_pretrain"), ["model.backbone=vit_demo_p14_synthetic"])
    rebuilt = build_model(shipped_cfg, training=False, backbone_weights=path).state_dict()
    original = model.state_dict()
    backbone_keys = [k for k in original if k.startswith(BACKBONE_PARTS)]
    # patch proj w/b; per block norm1, qkv, proj, norm2, fc1, fc2 (w/b) and two LayerScale gains; norm w/b; pos_embed
    assert len(backbone_keys) == 2 + 6 * 14 + 2 + 1
    for key in backbone_keys:
        torch.testing.assert_close(rebuilt[key], original[key], rtol=0, atol=0, msg=key)


def test_lora_model_is_refused_before_merging():
    cfg = load_experiment("lorat", "demo")  # LoRA adapters live inside the blocks while training
    with pytest.raises(ValueError, match="unmerged PEFT modules"):
        vit_state_from_lorat(build_model(cfg, training=True), create_vit("vit_demo_p14_synthetic_init"))


def test_shipped_backbone_is_small_half_precision_and_loads_strictly():
    path = default_weights_path("vit_demo_p14_synthetic")
    assert path == PRETRAINED_DIR / DEMO_BACKBONE_FILE and path.is_file(), "the shipped demo backbone is missing"
    assert path.stat().st_size <= 10 * 2**20  # the size limit for a shipped file
    state = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors only, nothing to unpickle
    assert {v.dtype for v in state.values()} == {torch.float16}
    network = create_vit("vit_demo_p14_synthetic_init")
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in network.parameters())
    model = build_model(load_experiment("lorat", "demo"), training=True, backbone_weights=path)
    loaded = model.state_dict()  # LoRA wraps each linear: its frozen weight is `<name>.linear.weight`
    torch.testing.assert_close(loaded["pos_embed"], state["pos_embed"][:, 1:].float(), rtol=0, atol=0)
    torch.testing.assert_close(loaded["blocks.0.attn.qkv.linear.weight"], state["blocks.0.attn.qkv.weight"].float(),
                               rtol=0, atol=0)


def test_shipped_backbone_refuses_code_in_the_file(tmp_path):
    """Loading uses weights_only=True: a pickle that would run code is refused with a message naming the file."""
    path = tmp_path / DEMO_BACKBONE_FILE
    path.write_bytes(pickle.dumps({"pos_embed": torch.zeros(1), "blocks.0.norm1.weight": print}))
    cfg = load_experiment("lorat", "demo")
    with pytest.raises(ValueError, match=f"{path}.*not a readable PyTorch checkpoint"):
        build_model(cfg, training=True, backbone_weights=path)


def test_pretraining_command_writes_a_loadable_backbone(tmp_path, run_cli):
    out = tmp_path / "backbone.pth"
    result = run_cli("pretrain_demo_backbone", "--quick", "--work_dir", str(tmp_path / "work"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    state = torch.load(out, map_location="cpu", weights_only=True)
    assert {v.dtype for v in state.values()} == {torch.float16}
    build_model(load_experiment("lorat", "demo"), training=True, backbone_weights=out)
    # its own pretraining data: domain P, written once and reused by the next run
    assert (tmp_path / "work" / "data" / "synthetic" / "P" / "train" / "list.txt").is_file()
    # phase 2 starts from phase 1's final weights, and the file written is phase 2's backbone
    runs = tmp_path / "work" / "checkpoints" / "train" / "lorat"
    phase1 = runs / "demo_pretrain" / "demo_pretrain_final.pth"
    phase2_log = (tmp_path / "work" / "logs" / "lorat-demo_pretrain2.log").read_text()
    assert f"initial weights: loaded 102 tensors from {phase1}" in phase2_log
    phase1_fc2 = torch.load(phase1, map_location="cpu", weights_only=True)["model"]["blocks.5.mlp.fc2.weight"]
    phase2_file = runs / "demo_pretrain2" / "demo_pretrain2_final.pth"
    phase2_fc2 = torch.load(phase2_file, map_location="cpu", weights_only=True)["model"]["blocks.5.mlp.fc2.weight"]
    assert not torch.equal(phase2_fc2, phase1_fc2)
    assert torch.equal(state["blocks.5.mlp.fc2.weight"], phase2_fc2.to(torch.float16))
