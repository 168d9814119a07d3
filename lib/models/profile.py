"""Parameter counts, MACs and forward latency, as reported by `tracking/profile_model.py` (upstream trackit/LoRAT:
model_profile.py and trackit/models/utils/profiling/)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from timm.models.eva import EvaAttention
from timm.models.vision_transformer import Attention

from lib.config import ExperimentConfig
from lib.models.loratv2 import LoRATv2
from lib.utils.precision import autocast


@dataclass(frozen=True)
class ParamCounts:
    total: int
    trainable: int
    lora: int
    extra: int  # trainable but not LoRA: token-type embedding + head (+ everything else when fully fine-tuned)


def count_params(model: nn.Module) -> ParamCounts:
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    lora = sum(v for n, v in trainable.items() if ".lora" in n)
    total = sum(p.numel() for p in model.parameters())
    return ParamCounts(total, sum(trainable.values()), lora, sum(trainable.values()) - lora)


def sample_inputs(cfg: ExperimentConfig, batch: int = 1, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """Upstream's profiling input: images filled with 0.5 and an all-foreground template mask."""
    t, s, f = cfg.model.template_size, cfg.model.search_size, cfg.model.template_feat_size
    return (torch.full((batch, 3, t, t), 0.5, device=device), torch.full((batch, 3, s, s), 0.5, device=device),
            torch.ones((batch, f, f), dtype=torch.long, device=device))


def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of one forward: thop for the layers, plus attention's two matrix products
    (q @ k^T and attn @ v, `B * heads * N * N * head_dim` each), which thop cannot see inside SDPA."""
    import thop

    attention_macs = 0

    def hook(module: Attention | EvaAttention, args: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        nonlocal attention_macs
        b, n, dim = args[0].shape
        attention_macs += 2 * b * n * n * dim

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (Attention, EvaAttention))]
    try:
        macs, _ = thop.profile(model, inputs=inputs, verbose=False)
    finally:
        for h in handles:
            h.remove()
        for m in model.modules():  # thop leaves its counters behind as buffers
            for name in ("total_ops", "total_params"):
                m._buffers.pop(name, None)
    return int(macs) + attention_macs


@dataclass(frozen=True)
class Latency:
    mean_ms: float
    median_ms: float
    fps: float  # frames (batch items) per second


def measure_latency(model: Callable[..., object], inputs: tuple[torch.Tensor, ...], precision: str = "fp32",
                    warmup: int = 10, runs: int = 100) -> Latency:
    """Time of `model(*inputs)` (a module, an engine or any call) under `torch.inference_mode` (and autocast for
    fp16/bf16, see lib.utils.precision): CUDA events on GPU, wall clock on CPU."""
    device = inputs[0].device
    times: list[float] = []
    with torch.inference_mode(), autocast(device.type, precision):
        for i in range(warmup + runs):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(*inputs)
                end.record()
                torch.cuda.synchronize()
                elapsed = start.elapsed_time(end)
            else:
                t0 = time.perf_counter()
                model(*inputs)
                elapsed = (time.perf_counter() - t0) * 1000
            if i >= warmup:
                times.append(elapsed)
    times.sort()
    mean = sum(times) / len(times)
    return Latency(mean, times[len(times) // 2], 1000.0 * inputs[0].shape[0] / mean)


def count_action_macs(action: Callable[[], object]) -> int:
    """Multiply-accumulates of everything `action()` runs, from torch's FLOP counter (matrix products, convolutions
    and attention, 2 FLOPs per MAC): it sees the functional calls (the K/V-only last block, SDPA) that thop's
    module hooks miss. Works on meta-device models, so full-size variants cost no memory."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def attention_flops(query_shape, key_shape, value_shape, *_args, **_kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    # the CPU kernel of SDPA is not in the counter's table: count it as the GPU kernels are
    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: attention_flops}
    with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        action()
    return counter.get_total_flops() // 2


def loratv2_action_macs(model: LoRATv2, batch: int = 1) -> dict[str, int]:
    """MACs of each tracking action of a merged LoRATv2 (upstream's profiling paths): `init` (registers +
    template), `update_i` for every stream before the last, `track_<last>`; inputs as `sample_inputs`."""
    device, dtype = model.pos_embed.device, model.pos_embed.dtype
    cache = model.new_kv_cache(batch)
    slots = torch.arange(batch, device=device)
    feat = model.template_size // model.patch_size

    def crop(size: int) -> torch.Tensor:
        return torch.full((batch, 3, size, size), 0.5, device=device, dtype=dtype)

    mask = torch.ones((batch, feat, feat), dtype=torch.long, device=device)
    last = model.num_streams - 1
    actions: dict[str, Callable[[], object]] = {"init": lambda: model.init(crop(model.template_size), mask, cache,
                                                                           slots)}
    for i in range(last):
        actions[f"update_{i}"] = lambda i=i: model.update(i, crop(model.search_sizes[i]), cache, slots)
    actions[f"track_{last}"] = lambda: model.track(last, crop(model.search_sizes[last]), cache, slots)
    with torch.inference_mode():
        return {name: count_action_macs(action) for name, action in actions.items()}
