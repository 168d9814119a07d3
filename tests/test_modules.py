"""The module ablations of the paper's Table 6 (experiments/lorat_ablation/*_smam, *_convhead, *_ostrackhead and
their *_fft twins): S-MAM attention, the conv and OSTrack heads, the trainable final norm and the plain BCE target
of upstream's conv-head ablations (https://github.com/LitingLin/LoRAT: config/LoRAT_ablation/, modules/head/,
modules/mixformer_attn.py)."""
from __future__ import annotations

import math

import pytest
import torch

import ablation_helpers
from ablation_helpers import assert_checkpoints_round_trip, nudge_trainable_, tiny
from lib.config import load_experiment
from lib.models import build_model
from lib.models.lorat import smam_mask
from lib.train.loss import lorat_loss
from lib.train.optim import build_optimizer

MODULES = ("smam", "convhead", "ostrackhead")


pytestmark = pytest.mark.usefixtures("one_thread")




def batch(cfg, n: int = 2):
    return ablation_helpers.batch(cfg, n, seed=2)


def test_smam_mask_by_hand():
    mask = smam_mask(4, 9)
    for q in range(13):
        for k in range(13):
            assert bool(mask[q, k]) == (q >= 4 or k < 4), (q, k)


def test_smam_template_tokens_ignore_the_search_region():
    """With S-MAM the template tokens' outputs of every block depend on the template only; with full attention
    they do not."""
    for config, independent in (("base_224_smam", True), ("base_224_lora_r16", False)):
        model = build_model(tiny(config), training=False)
        tokens = torch.randn(1, 16 + 64, 192)
        changed = tokens.clone()
        changed[:, 16:] += torch.randn(1, 64, 192)
        with torch.no_grad():
            a, b = tokens, changed
            for block in model.blocks:
                a, b = block(a, attn_mask=model.attn_mask), block(b, attn_mask=model.attn_mask)
        assert torch.equal(a[:, :16], b[:, :16]) == independent


@pytest.mark.parametrize("module", MODULES)
def test_trainable_sets_and_a_training_step(module):
    cfg = tiny(f"base_224_{module}")
    model = build_model(cfg, training=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = {f"head.{n}" for n, _ in model.head.named_parameters()}
    lora = {n for n in trainable if ".lora" in n}
    assert len(lora) == 6 * 12  # LoRAT's adapters: q, k, v, proj, fc1, fc2, A and B, 6 blocks
    assert trainable == lora | head | {"token_type_embed", "norm.weight", "norm.bias"}  # upstream: norm trains
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model.train()(*batch(cfg))
    assert out["score_map"].shape == (2, 8, 8) and out["boxes"].shape == (2, 8, 8, 4)
    (out["score_map"].square().mean() + out["boxes"].square().mean()).backward()
    build_optimizer(model, lr=1e-2, weight_decay=0.1).step()
    assert {n for n, p in model.named_parameters() if not torch.equal(p, before[n])} == trainable
    fft = build_model(tiny(f"base_224_{module}_fft"), training=True)
    assert all(p.requires_grad for p in fft.parameters())


@pytest.mark.parametrize("module", MODULES)
def test_merge_and_checkpoints_round_trip(module, tmp_path):
    cfg = tiny(f"base_224_{module}")
    model = build_model(cfg, training=True)
    inputs = batch(cfg, 4)
    model.train()(*inputs)  # moves the BatchNorm statistics of the conv heads away from their init
    nudge_trainable_(model)
    assert_checkpoints_round_trip(model, cfg, inputs, tmp_path)


def _last_conv(tower: torch.nn.Sequential) -> torch.nn.Conv2d:
    return tower[-1]


def test_conv_head_decodes_distances_from_the_cell_centre():
    model = build_model(tiny("base_224_convhead"), training=False)
    head = model.head
    with torch.no_grad():
        _last_conv(head.reg_convs).weight.zero_()
        _last_conv(head.reg_convs).bias.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
        out = head(torch.randn(1, 64, 192))
    l, t, r, b = (1 / (1 + math.exp(-v)) for v in (0.0, 1.0, -1.0, 2.0))
    cx, cy = (3 + 0.5) / 8, (5 + 0.5) / 8  # row 5, column 3
    torch.testing.assert_close(out["boxes"][0, 5, 3], torch.tensor([cx - l, cy - t, cx + r, cy + b]))


def test_ostrack_head_decodes_centre_offset_and_size():
    model = build_model(tiny("base_224_ostrackhead"), training=False)
    head = model.head
    with torch.no_grad():
        for tower, bias in ((head.offset_convs, [0.05, -0.1]), (head.size_convs, [0.0, 1.0])):
            _last_conv(tower).weight.zero_()
            _last_conv(tower).bias.copy_(torch.tensor(bias))
        out = head(torch.randn(1, 64, 192))
    cx, cy = (2 + 0.5) / 8 + 0.05, (6 + 0.5) / 8 - 0.1  # row 6, column 2
    w, h = 0.5, 1 / (1 + math.exp(-1.0))
    torch.testing.assert_close(out["boxes"][0, 6, 2], torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    assert all(isinstance(m, torch.nn.BatchNorm2d) for m in (head.ctr_convs[0][1], head.size_convs[3][1]))


def test_plain_bce_target_by_hand():
    """iou_aware=False: target 1 at the positive cell (not the IoU), 0 elsewhere; BCE summed over the map and
    divided by the positives."""
    logits = torch.tensor([[[0.3, -1.2], [2.0, 0.1]]])
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.4]]).expand(4, 4).reshape(1, 2, 2, 4).clone()
    gt = torch.tensor([[0.1, 0.1, 0.5, 0.5]])
    idx_b, idx_m = torch.tensor([0]), torch.tensor([2])
    _, stats = lorat_loss(logits, boxes, gt, idx_b, idx_m, 1.0, iou_aware=False)
    sig = [1 / (1 + math.exp(-v)) for v in (0.3, -1.2, 2.0, 0.1)]
    targets = [0, 0, 1, 0]
    expected = -sum(t * math.log(s) + (1 - t) * math.log(1 - s) for s, t in zip(sig, targets))
    assert stats["loss_cls"] == pytest.approx(expected, rel=1e-6)
    _, iou_stats = lorat_loss(logits, boxes, gt, idx_b, idx_m, 1.0)
    iou = (0.3 * 0.3) / (0.4 * 0.4)
    targets[2] = iou
    expected_iou = -sum(t * math.log(s) + (1 - t) * math.log(1 - s) for s, t in zip(sig, targets))
    assert iou_stats["loss_cls"] == pytest.approx(expected_iou, rel=1e-6)


def test_configs_carry_upstreams_differences():
    for size in ("large", "base"):
        smam = load_experiment("lorat_ablation", f"{size}_224_smam")
        assert smam.model.attention == "smam" and smam.model.train_final_norm and smam.train.iou_aware_target
        for head, name in (("conv", "convhead"), ("ostrack", "ostrackhead")):
            for suffix, lora in (("", True), ("_fft", False)):
                cfg = load_experiment("lorat_ablation", f"{size}_224_{name}{suffix}")
                assert cfg.model.head == head and not cfg.train.iou_aware_target
                assert (cfg.model.lora is not None) == lora
        assert load_experiment("lorat_ablation", f"{size}_224_smam_fft").train.layer_decay == \
            {"large": 0.8, "base": 0.7}[size]


def _unit_layer_scale(model: torch.nn.Module) -> torch.nn.Module:
    """DINOv2's layer scale starts at 1e-5, which hides what attention does; 1.0 makes it visible."""
    with torch.no_grad():
        for block in model.blocks:
            block.ls1.gamma.fill_(1.0)
            block.ls2.gamma.fill_(1.0)
    return model


@pytest.mark.parametrize("config", ["base_224_smam"])
def test_onnx_export_keeps_the_ablation_modules(config):
    """The exported graph computes what the eager model does, and (S-MAM) not what full attention does."""
    pytest.importorskip("onnxruntime")
    from lib.models.onnx_export import export_to_bytes, max_output_difference, ort_session

    model = _unit_layer_scale(build_model(tiny(config), training=False))
    session = ort_session(export_to_bytes(model))
    own = max(max_output_difference(model, session).values())
    assert own < 1e-4
    if config == "base_224_smam":
        full = _unit_layer_scale(build_model(tiny("base_224_lora_r16"), training=False))  # same weights, no mask
        assert max(max_output_difference(full, session).values()) > 20 * own
