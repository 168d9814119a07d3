from __future__ import annotations

import pytest
import torch
from timm.scheduler import CosineLRScheduler
from torch import nn

from lib.train.optim import WarmupCosineSchedule, build_optimizer, layer_id, param_groups

D = 8


class ToyLoRALinear(nn.Module):
    """Frozen base linear + LoRA A/B, named like the real model (``<layer>.linear``, ``<layer>.lora.A``)."""

    def __init__(self, d_in: int, d_out: int, rank: int = 2) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.lora = nn.Module()
        self.lora.A = nn.Parameter(torch.randn(rank, d_in) * 0.02)
        self.lora.B = nn.Parameter(torch.randn(d_out, rank) * 0.02)


class ToyBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(D)
        self.attn = nn.Module()
        self.attn.qkv = nn.Module()
        for tag in "qkv":
            setattr(self.attn.qkv, tag, ToyLoRALinear(D, D))
        self.attn.proj = ToyLoRALinear(D, D)
        self.ls1 = nn.Module()
        self.ls1.gamma = nn.Parameter(torch.ones(D))


class ToyTracker(nn.Module):
    def __init__(self, num_blocks: int = 2) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, D, 2, 2)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, D))
        self.token_type_embed = nn.Parameter(torch.zeros(3, D))
        self.blocks = nn.ModuleList(ToyBlock() for _ in range(num_blocks))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Module()
        self.head.cls = nn.Linear(D, 1)
        self.head.reg = nn.Linear(D, 4)


def lora_setup() -> ToyTracker:
    """LoRAT trainability (upstream trackit/models/methods/LoRAT/builder.py): only LoRA A/B, token_type_embed and the head are trainable."""
    model = ToyTracker()
    for name, param in model.named_parameters():
        param.requires_grad_(".lora." in name or name == "token_type_embed" or name.startswith("head."))
    return model


def names_by_wd(groups: list[dict]) -> dict[float, set[str]]:
    out: dict[float, set[str]] = {}
    for group in groups:
        out.setdefault(group["weight_decay"], set()).update(group["param_names"])
    return out


def test_lora_param_groups() -> None:
    model = lora_setup()
    groups = param_groups(model, weight_decay=0.1, lr=1e-4)
    by_wd = names_by_wd(groups)
    lora = {f"blocks.{i}.attn.{layer}.lora.{m}" for i in range(2)
            for layer in ("qkv.q", "qkv.k", "qkv.v", "proj") for m in "AB"}
    assert by_wd[0.1] == lora | {"head.reg.weight"}
    # biases are 1-D; head.cls.weight is [1, D] -> 1-D after squeeze (upstream rule); token_type_embed: 'embed'
    assert by_wd[0.0] == {"head.cls.weight", "head.cls.bias", "head.reg.bias", "token_type_embed"}
    assert all(g["lr"] == 1e-4 and g["lr_scale"] == 1.0 for g in groups)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(trainable)  # frozen excluded, nothing duplicated
    assert len(grouped) == 16 + 5


def test_norm_params_never_decay_even_if_two_dim() -> None:
    model = nn.Module()
    model.gn = nn.GroupNorm(2, 4)
    model.fc = nn.Linear(4, 4)
    by_wd = names_by_wd(param_groups(model, weight_decay=0.05, lr=1.0))
    assert by_wd == {0.05: {"fc.weight"}, 0.0: {"gn.weight", "gn.bias", "fc.bias"}}


def test_no_trainable_params_raises() -> None:
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 0.1, 1e-4)


def test_layer_id_rule() -> None:
    assert layer_id("patch_embed.proj.weight", 12) == 0
    assert layer_id("blocks.0.norm1.weight", 12) == 1
    assert layer_id("blocks.11.mlp.fc2.lora.B", 12) == 12
    assert layer_id("pos_embed", 12) == 13
    assert layer_id("token_type_embed", 12) == 13
    assert layer_id("norm.weight", 12) == 13
    assert layer_id("head.reg_mlp.layers.2.weight", 12) == 13


@pytest.mark.parametrize("num_layers", [2, None])  # None: inferred from blocks.0 / blocks.1
def test_layer_decay_full_finetune(num_layers: int | None) -> None:
    model = ToyTracker()  # everything trainable
    groups = param_groups(model, weight_decay=0.1, lr=1e-4, layer_decay=0.7, num_layers=num_layers)
    scale_of = {name: g["lr_scale"] for g in groups for name in g["param_names"]}
    wd_of = {name: g["weight_decay"] for g in groups for name in g["param_names"]}
    assert scale_of["patch_embed.proj.weight"] == pytest.approx(0.7 ** 3)
    assert scale_of["patch_embed.proj.bias"] == pytest.approx(0.7 ** 3)
    assert scale_of["blocks.0.attn.qkv.q.lora.A"] == pytest.approx(0.7 ** 2)
    assert scale_of["blocks.1.norm1.weight"] == pytest.approx(0.7)
    for name in ("pos_embed", "token_type_embed", "norm.weight", "head.reg.weight"):
        assert scale_of[name] == 1.0
    # the patch-embedding conv is claimed by the layer-decay rule before the 'embed' rule -> keeps decay
    assert wd_of["patch_embed.proj.weight"] == 0.1
    assert wd_of["blocks.0.attn.proj.linear.weight"] == 0.1
    for name in ("patch_embed.proj.bias", "pos_embed", "token_type_embed", "blocks.0.ls1.gamma",
                 "blocks.1.norm1.weight", "norm.bias", "head.cls.weight"):
        assert wd_of[name] == 0.0, name
    for g in groups:
        assert g["lr"] == pytest.approx(1e-4 * g["lr_scale"])
        assert len({(wd_of[n], scale_of[n]) for n in g["param_names"]}) == 1
    assert len(groups) == len({(g["weight_decay"], g["lr_scale"]) for g in groups}) == 8


def test_build_optimizer_applies_decoupled_weight_decay_per_group() -> None:
    model = lora_setup()
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.5)
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8 for g in opt.param_groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    opt.step()  # zero gradient -> Adam term is 0, only AdamW decay p *= 1 - lr * wd acts
    for name, param in model.named_parameters():
        if name in {"blocks.0.attn.proj.lora.A", "head.reg.weight"}:
            torch.testing.assert_close(param, before[name] * (1 - 1e-2 * 0.5))
        elif name in {"head.reg.bias", "token_type_embed", "head.cls.weight", "blocks.0.norm1.weight"}:
            torch.testing.assert_close(param, before[name], rtol=0, atol=0)


def _optimizer(lrs: list[float], scales: list[float] | None = None) -> torch.optim.Optimizer:
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    for group, scale in zip(groups, scales or []):
        group["lr_scale"] = scale
    return torch.optim.AdamW(groups)


LORAT = dict(base_lr=1e-4, warmup_lr=1e-7, min_lr=1e-6, warmup_steps=2048, total_steps=170 * 1024)


def test_schedule_hand_values() -> None:
    sched = WarmupCosineSchedule(_optimizer([1e-4]), **LORAT)
    assert sched.lr_at(0) == pytest.approx(1e-7, rel=1e-12)
    # 1e-7 + (1e-4 - 1e-7) / 2048 = 1e-7 + 4.8779296875e-8
    assert sched.lr_at(1) == pytest.approx(1.48779296875e-7, rel=1e-12)
    # 1e-4 - 4.8779296875e-8
    assert sched.lr_at(2047) == pytest.approx(9.9951220703125e-5, rel=1e-12)
    assert sched.lr_at(2048) == pytest.approx(1e-4, rel=1e-12)  # cosine starts at its peak after the prefix
    # k' = 1000: 1e-6 + 0.5 * 9.9e-5 * (1 + cos(pi * 1000 / 174080))
    assert sched.lr_at(3048) == pytest.approx(9.999193943646471e-05, rel=1e-12)
    # last scheduler index of a 170-epoch run (k = 174079, k' = 172031): 1 + cos(pi - x) ~ x^2/2 with
    # x = pi * 2049 / 174080 = 0.036977 -> 1e-6 + 4.95e-5 * 6.8365e-4 = 1.03384e-6 (upstream: ~1.03e-6)
    assert sched.lr_at(174079) == pytest.approx(1.0338385404234352e-06, rel=1e-9)
    assert sched.lr_at(2048 + 174080) == 1e-6  # past the single cycle: lr_min


def test_schedule_matches_timm_values() -> None:
    opt = _optimizer([1e-4])
    sched = WarmupCosineSchedule(_optimizer([1e-4]), **LORAT)
    timm_sched = CosineLRScheduler(opt, t_initial=LORAT["total_steps"], lr_min=1e-6, warmup_t=2048,
                                   warmup_lr_init=1e-7, warmup_prefix=True, t_in_epochs=False)
    for k in [0, 1, 2, 1000, 2047, 2048, 2049, 50_000, 100_000, 174_079, 176_127, 176_128, 200_000]:
        timm_sched.step_update(k)
        assert sched.lr_at(k) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-13, abs=0), k


def test_step_offset_and_layer_scales_match_timm_training_loop() -> None:
    cfg = dict(base_lr=1e-3, warmup_lr=1e-5, min_lr=2e-5, warmup_steps=4, total_steps=12)
    scales = [0.7 ** 3, 0.49, 1.0]
    mine = _optimizer([cfg["base_lr"] * s for s in scales], scales)
    sched = WarmupCosineSchedule(mine, **cfg)
    # upstream: groups created with lr = base * scale and no lr_scale key; timm uses them as per-group peaks
    ref = _optimizer([cfg["base_lr"] * s for s in scales])
    timm_sched = CosineLRScheduler(ref, t_initial=12, lr_min=2e-5, warmup_t=4, warmup_lr_init=1e-5,
                                   warmup_prefix=True, t_in_epochs=False)
    used_mine, used_ref = [], []
    for i in range(20):
        used_mine.append([g["lr"] for g in mine.param_groups])
        used_ref.append([g["lr"] for g in ref.param_groups])
        sched.step()
        timm_sched.step_update(i)
    flat_ref = [lr for row in used_ref for lr in row]
    assert [lr for row in used_mine for lr in row] == pytest.approx(flat_ref, rel=1e-13)
    assert used_mine[0] == used_mine[1] == [sched.lr_at(0, s) for s in scales]  # updates 0 and 1 use lr(0)
    assert used_mine[5] == [sched.lr_at(4, s) for s in scales]
    assert used_mine[5][2] == pytest.approx(1e-3)  # the first cosine step is the (scale-1) peak


def test_state_dict_round_trip_resumes_schedule() -> None:
    cfg = dict(base_lr=1e-3, warmup_lr=1e-5, min_lr=1e-6, warmup_steps=3, total_steps=10)
    first = WarmupCosineSchedule(_optimizer([1e-3, 5e-4], [1.0, 0.5]), **cfg)
    for _ in range(7):
        first.step()
    state = first.state_dict()
    resumed = WarmupCosineSchedule(_optimizer([1e-3, 5e-4], [1.0, 0.5]), **cfg)
    assert resumed.get_last_lr() != first.get_last_lr()
    resumed.load_state_dict(state)
    assert resumed.num_updates == 7
    assert resumed.get_last_lr() == first.get_last_lr() == [first.lr_at(6), first.lr_at(6, 0.5)]
    for _ in range(5):
        first.step()
        resumed.step()
        assert resumed.get_last_lr() == first.get_last_lr()
    other = WarmupCosineSchedule(_optimizer([1e-3]), **{**cfg, "total_steps": 20})
    with pytest.raises(ValueError, match="total_steps"):
        other.load_state_dict(state)
