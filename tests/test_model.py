"""LoRAT model: shapes, LoRA merge, trainable sets, position embedding, head decoding (upstream trackit/LoRAT:
trackit/models/methods/LoRAT/lorat.py, modules/lora/, modules/head/mlp.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lib.config import load_experiment
from lib.models import build_model, merge_for_inference
from lib.models.head import reference_points
from lib.models.lorat import search_pos_embed
from lib.models.profile import count_params

VARIANTS = ["small_224", "small_378", "base_224", "base_378", "large_224", "large_378", "giant_224", "giant_378"]
DIMS = {"small": 384, "base": 768, "large": 1024, "giant": 1536}
DEPTHS = {"small": 12, "base": 12, "large": 24, "giant": 40}


def _inputs(cfg, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t, s, f = cfg.model.template_size, cfg.model.search_size, cfg.model.template_feat_size
    return (torch.randn(batch, 3, t, t, generator=g), torch.randn(batch, 3, s, s, generator=g),
            torch.randint(0, 2, (batch, f, f), generator=g))


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_every_variant(variant):
    cfg = load_experiment("lorat", variant)
    size, res = variant.split("_")
    grid, zgrid = (16, 8) if res == "224" else (27, 14)
    with torch.device("meta"):  # shapes only: no memory for ViT-g
        model = build_model(cfg, training=True)
        z, x, mask = (torch.empty(2, 3, cfg.model.template_size, cfg.model.template_size),
                      torch.empty(2, 3, cfg.model.search_size, cfg.model.search_size),
                      torch.zeros(2, zgrid, zgrid, dtype=torch.long))
        out = model(z, x, mask)
    assert out["score_map"].shape == (2, grid, grid)
    assert out["boxes"].shape == (2, grid, grid, 4)
    assert model.pos_embed.shape == (1, grid * grid, DIMS[size])
    assert len(model.blocks) == DEPTHS[size]


# Paper Table 2: trainable = LoRA (64 * sum(in + out) per block) + head + token types.
@pytest.mark.parametrize("variant,lora,trainable,total_m", [
    ("base_224", 10_616_832, 12_985_349, 99), ("large_378", 28_311_552, 32_518_149, 336),
    ("giant_224", 70_778_880, 80_234_501, 1216)])
def test_parameter_counts_match_upstream(variant, lora, trainable, total_m):
    with torch.device("meta"):
        counts = count_params(build_model(load_experiment("lorat", variant), training=True))
    assert counts.lora == lora and counts.trainable == trainable
    assert abs(counts.total / 1e6 - total_m) < 1.0  # the paper rounds to whole millions


def test_lora_count_formula_by_hand():
    d, hidden, r, depth = 768, 3072, 64, 12
    per_block = r * (3 * (d + d) + (d + d) + (d + hidden) + (hidden + d))  # q, k, v, proj, fc1, fc2
    with torch.device("meta"):
        counts = count_params(build_model(load_experiment("lorat", "base_224"), training=True))
    assert counts.lora == depth * per_block


def test_trainable_and_frozen_sets_exact():
    model = build_model(load_experiment("lorat", "small_224"), training=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {"token_type_embed"}
    expected |= {f"head.{b}.layers.{i}.{w}" for b in ("cls_mlp", "reg_mlp") for i in range(3) for w in ("weight", "bias")}
    for i in range(12):
        expected |= {f"blocks.{i}.attn.qkv.lora_{s}.{m}" for s in "qkv" for m in "AB"}
        expected |= {f"blocks.{i}.{t}.lora.{m}" for t in ("attn.proj", "mlp.fc1", "mlp.fc2") for m in "AB"}
    assert trainable == expected
    assert len(trainable) == 157  # 12 blocks x 6 adapters x (A, B) + 12 head tensors + token types
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    for name in ("pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
                 "blocks.0.ls1.gamma", "blocks.11.ls2.gamma", "blocks.3.norm1.weight", "blocks.5.attn.qkv.linear.bias",
                 "blocks.7.mlp.fc2.linear.weight"):
        assert name in frozen


def test_full_finetuning_trains_everything():
    model = build_model(load_experiment("lorat", "small_224_fft"), training=True)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(".lora" in n for n, _ in model.named_parameters())


def test_inference_model_is_plain_and_frozen():
    model = build_model(load_experiment("lorat", "small_224"), training=False)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert isinstance(model.blocks[0].attn.qkv, torch.nn.Linear)


def test_build_is_reproducible():
    cfg = load_experiment("lorat", "small_224")
    a, b = build_model(cfg, training=True), build_model(cfg, training=True)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_lora_init_is_bert_style_nonzero():
    model = build_model(load_experiment("lorat", "small_224"), training=True)
    a, b = model.blocks[0].mlp.fc1.lora.A, model.blocks[0].mlp.fc1.lora.B
    assert a.shape == (64, 384) and b.shape == (1536, 64)
    for t in (a, b):  # trunc-normal std 0.02 for both: B is not zero
        assert abs(t.std().item() - 0.02) < 0.002 and t.abs().max().item() < 0.1
    assert model.blocks[0].mlp.fc1.lora.scaling == 1.0


@pytest.mark.parametrize("variant", ["small_224", "base_224"])
def test_merged_equals_unmerged(variant):
    cfg = load_experiment("lorat", variant)
    model = build_model(cfg, training=True).eval()
    with torch.no_grad():  # make the adapters matter: larger B than at init
        for n, p in model.named_parameters():
            if n.endswith(".B"):
                p.normal_(0, 0.02)
    inputs = _inputs(cfg)
    with torch.no_grad():
        before = model(*inputs)
        merge_for_inference(model)
        after = model(*inputs)
    assert not any(".lora" in k for k in model.state_dict())
    for key in ("score_map", "boxes"):
        assert torch.allclose(before[key], after[key], atol=1e-5, rtol=0)
    assert before["score_map"].dtype == torch.float32


def test_merge_matches_manual_weight_update():
    model = build_model(load_experiment("lorat", "small_224"), training=True)
    qkv = model.blocks[2].attn.qkv
    expected = qkv.linear.weight.detach().clone()
    d = expected.shape[1]
    expected[d:2 * d] += qkv.lora_k.B.detach() @ qkv.lora_k.A.detach()
    expected[:d] += qkv.lora_q.B.detach() @ qkv.lora_q.A.detach()
    expected[2 * d:] += qkv.lora_v.B.detach() @ qkv.lora_v.A.detach()
    merge_for_inference(model)
    assert torch.allclose(model.blocks[2].attn.qkv.weight, expected, atol=1e-6)


def _keys_bicubic_resize(grid: np.ndarray, out: int) -> np.ndarray:
    """Independent separable bicubic (Keys, a = -0.75), half-pixel centres, clamped borders, no antialias."""
    def kernel(t):
        a, t = -0.75, abs(t)
        if t <= 1:
            return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
        if t < 2:
            return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
        return 0.0

    def matrix(n_in, n_out):
        m = np.zeros((n_out, n_in))
        for o in range(n_out):
            src = (o + 0.5) * n_in / n_out - 0.5
            base = math.floor(src)
            for k in range(base - 1, base + 3):
                m[o, min(max(k, 0), n_in - 1)] += kernel(src - k)
        return m

    r = matrix(grid.shape[0], out)
    return np.einsum("oi,ijd,pj->opd", r, grid, r)


@pytest.mark.parametrize("feat", [16, 27])
def test_pos_embed_interpolation_independent(feat):
    g = torch.Generator().manual_seed(1)
    pretrained = torch.randn(1, 1 + 37 * 37, 8, generator=g)
    ours = search_pos_embed(pretrained, 37, feat).reshape(feat, feat, 8).numpy()
    expected = _keys_bicubic_resize(pretrained[0, 1:].reshape(37, 37, 8).double().numpy(), feat)
    assert np.abs(ours - expected).max() < 5e-5  # float32 arithmetic; a wrong kernel is off by ~1e-2


def test_template_pos_embed_is_top_left_slice():
    model = build_model(load_experiment("lorat", "small_378"), training=False)
    full = model.pos_embed.detach().reshape(27, 27, -1)
    templ = model.template_pos_embed().detach().reshape(14, 14, -1)
    assert torch.equal(templ, full[:14, :14])
    assert torch.equal(model.template_pos_embed()[0, 15], model.pos_embed[0, 28])  # row 1, col 1 of both grids


def test_token_types_follow_mask():
    """Template tokens get type 0/1 from the mask, search tokens type 2: changing a row changes only them."""
    cfg = load_experiment("lorat", "small_224")
    model = build_model(cfg, training=False)
    z, x, mask = _inputs(cfg, batch=1)
    captured = {}
    model.blocks[0].register_forward_pre_hook(lambda m, a: captured.setdefault("t", []).append(a[0].clone()))
    with torch.no_grad():
        model(z, x, torch.zeros_like(mask))
        model.token_type_embed[1] += 1.0
        model(z, x, torch.zeros_like(mask))  # no foreground: unchanged
        model(z, x, torch.ones_like(mask))
        model.token_type_embed[2] += 1.0
        model(z, x, torch.ones_like(mask))
    t0, t1, t2, t3 = captured["t"]
    tte = model.token_type_embed
    assert torch.equal(t0, t1)
    assert torch.allclose(t2[:, :64] - t1[:, :64], (tte[1] - tte[0]).expand(1, 64, -1), atol=1e-6)
    assert torch.equal(t2[:, 64:], t1[:, 64:])
    assert torch.allclose(t3[:, 64:] - t2[:, 64:], torch.ones(1)) and torch.equal(t3[:, :64], t2[:, :64])


def test_head_decoding_by_hand():
    cfg = load_experiment("lorat", "small_224")
    model = build_model(cfg, training=False)
    ref = reference_points(16)
    assert torch.allclose(ref[0, 0], torch.tensor([0.5 / 16, 0.5 / 16]))
    assert torch.allclose(ref[3, 5], torch.tensor([5.5 / 16, 3.5 / 16]))  # (x, y) = (col, row)
    head = model.head
    with torch.no_grad():  # make the regression output constant: logits (0, ln 3, 0, -ln 3) -> 0.5, .75, .5, .25
        for layer in head.reg_mlp.layers:
            layer.weight.zero_()
            layer.bias.zero_()
        head.reg_mlp.layers[2].bias.copy_(torch.tensor([0.0, math.log(3), 0.0, -math.log(3)]))
        out = head(torch.randn(1, 256, 384))
    box = out["boxes"][0, 3, 5]
    cx, cy = 5.5 / 16, 3.5 / 16
    assert torch.allclose(box, torch.tensor([cx - 0.5, cy - 0.75, cx + 0.5, cy + 0.25]), atol=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_qkv_adapters_equal_three_separate_adapters(dropout):
    """The fused q/k/v path computes [W x] + [B_q A_q x; B_k A_k x; B_v A_v x] * scaling, gradients included."""
    from dataclasses import replace

    cfg = load_experiment("lorat", "small_224")
    lora_cfg = replace(cfg.model.lora, dropout=dropout, alpha=32.0)  # scaling 0.5
    cfg = replace(cfg, model=replace(cfg.model, lora=lora_cfg))
    qkv = build_model(cfg, training=True).blocks[0].attn.qkv
    x = torch.randn(2, 5, qkv.linear.in_features, requires_grad=True)
    torch.manual_seed(0)
    out = qkv.eval()(x) if dropout else qkv(x)
    w = qkv.linear.weight.detach()
    parts = [x @ a.A.t() @ a.B.t() * 0.5 for a in (qkv.lora_q, qkv.lora_k, qkv.lora_v)]
    expected = x @ w.t() + qkv.linear.bias.detach() + torch.cat(parts, dim=-1)
    assert qkv.shared_input == (dropout == 0)
    assert torch.allclose(out, expected, atol=1e-5)
    (g_out,) = torch.autograd.grad(out.sum(), x)
    (g_exp,) = torch.autograd.grad(expected.sum(), x)
    assert torch.allclose(g_out, g_exp, atol=1e-5)
    if dropout:  # training mode: exactly three adapters applied one after the other, each with its own mask
        qkv.train()
        torch.manual_seed(1)
        delta = qkv(x) - qkv.linear(x)
        torch.manual_seed(1)
        separate = torch.cat([qkv.lora_q(x), qkv.lora_k(x), qkv.lora_v(x)], dim=-1)
        assert torch.allclose(delta, separate, atol=1e-5)
        assert not torch.allclose(delta, torch.cat(parts, dim=-1), atol=1e-3)


@pytest.mark.parametrize("training", [False, True])
def test_backbone_state_keys_are_the_vit_tensors(training):
    """What a checkpoint may leave to the backbone file: every tensor of timm's ViT that LoRAT keeps (all but the
    CLS token), under LoRAT's names (`.linear.` inside adapter-wrapped layers); never adapters, head or token types."""
    import re

    from lib.models.backbone import create_vit

    cfg = load_experiment("lorat", "demo_lora")
    model = build_model(cfg, training=training)
    vit_keys = set(create_vit(cfg.model.backbone).state_dict()) - {"cls_token"}
    if training:
        vit_keys = {re.sub(r"\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.", r".\1.linear.", k) for k in vit_keys}
    assert model.backbone_state_keys() == vit_keys
    assert len(vit_keys) == 6 * 14 + 5  # demo ViT: 6 blocks


def test_latency_uses_the_shared_precision_names():
    """Profiling speaks the config's precision vocabulary (fp32 = no autocast), not a table of its own."""
    from lib.models.profile import measure_latency

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return x

    seen: list = []
    inputs = (torch.zeros(1, 3),)
    measure_latency(Probe(), inputs, "bf16", warmup=0, runs=1)
    measure_latency(Probe(), inputs, "fp32", warmup=0, runs=1)
    assert seen == [torch.bfloat16, None]
    with pytest.raises(ValueError, match="fp32, fp16, bf16"):
        measure_latency(Probe(), inputs, "none", warmup=0, runs=1)


@pytest.mark.parametrize("init", ["lora", "gaussian"])
def test_ablation_lora_inits_start_at_zero_update(init):
    """The LoRA paper's init (A Kaiming-uniform with a = sqrt(5): bound 1 / sqrt(in)) and the gaussian one
    (A ~ N(0, 1 / r)) both start with B = 0."""
    from lib.config import LoRAConfig
    from lib.models.lora import LoRA

    torch.manual_seed(0)
    adapter = LoRA(384, 768, LoRAConfig(r=64, alpha=64.0, dropout=0.0, use_rslora=False, init=init))
    assert torch.equal(adapter.B, torch.zeros(768, 64))
    if init == "lora":
        bound = 1 / math.sqrt(384)
        assert adapter.A.abs().max().item() <= bound and abs(adapter.A.std().item() - bound / math.sqrt(3)) < 1e-3
    else:
        assert abs(adapter.A.std().item() - 1 / 64) < 1e-3
