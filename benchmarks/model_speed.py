"""Forward latency of the merged (inference) LoRAT model, optionally side by side with the official code.

    python -m benchmarks.model_speed [--variants small_224 base_224] [--device cpu|cuda] [--dtype fp32|fp16|bf16]
                                     [--runs N] [--warmup N] [--threads N] [--upstream /path/to/LoRAT-checkout]
    python -m benchmarks.model_speed --variants base_224 --threads 2 --engines eager bf16 fp16 int8 onnxruntime \
                                     [--upstream /path/to/LoRAT-checkout]

Batch 1, images filled with 0.5 and an all-foreground template mask (upstream's profiling input). With
`--upstream`, the official `LoRAT_DINOv2` is imported from that checkout (nothing of it is copied here), given this
project's random weights through a key mapping, checked to give the same outputs, and both models are timed in one
process, alternating call by call so that machine load affects both alike.

With `--engines` the inference engines of lib/models/engines.py are timed side by side in the same way (one call
each in turn), next to each engine's largest score-map and box deviation from fp32 eager on random inputs (random
weights with O(1) LayerScale gammas, so that every block shapes the output). An engine this machine cannot run is
listed with the reason. Adding `--upstream` puts the official model (same weights) in the same rotation under its
fastest CPU path, bf16 autocast (fp16 autocast on a GPU), and prints every engine's speed-up over it.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

from lib.config import ExperimentConfig, load_experiment
from lib.models import build_model
from lib.models.engines import ENGINE_NAMES, EngineError, TorchEngine, build_engine
from lib.models.onnx_export import random_inputs
from lib.models.profile import measure_latency, sample_inputs

DEFAULT_VARIANTS = ("small_224", "small_378", "base_224", "base_378")
# Our backbone key -> upstream DINOv2 factory (trackit/models/backbone/dinov2/model.py)
UPSTREAM_FACTORIES = {"dinov2_vits14": "vit_small", "dinov2_vitb14": "vit_base", "dinov2_vitl14": "vit_large",
                      "dinov2_vitg14": "vit_giant2"}


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def randomise_layer_scale_(model: nn.Module, seed: int = 0) -> None:
    """Random init leaves LayerScale at 1e-5, which hides the blocks from an output comparison: use O(1) gammas."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gamma"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.9 + 0.1)


def build_upstream(checkout: Path, cfg: ExperimentConfig, ours: nn.Module) -> nn.Module:
    """The official merged inference model (a plain `LoRAT_DINOv2`) holding `ours`'s weights."""
    if not (checkout / "trackit" / "models" / "methods" / "LoRAT" / "lorat.py").is_file():
        raise FileNotFoundError(f"{checkout} is not a checkout of github.com/LitingLin/LoRAT "
                                f"(trackit/models/methods/LoRAT/lorat.py missing)")
    sys.path.insert(0, str(checkout))
    from trackit.models.backbone.dinov2 import model as dinov2
    from trackit.models.methods.LoRAT.lorat import LoRAT_DINOv2

    factory = getattr(dinov2, UPSTREAM_FACTORIES[cfg.model.backbone])
    vit = factory(patch_size=14, block_chunks=0, init_values=1.0e-5, drop_path_uniform=True, img_size=518)
    t, s = cfg.model.template_feat_size, cfg.model.search_feat_size
    theirs = LoRAT_DINOv2(vit, (t, t), (s, s))
    swiglu = cfg.model.backbone == "dinov2_vitg14"
    state = {upstream_key(k, swiglu): v for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    return theirs.eval().requires_grad_(False)


def upstream_key(key: str, swiglu: bool) -> str:
    """Merged-model names are the same in both code bases, except ViT-g's SwiGLU linears (w12/w3 upstream)."""
    return key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.") if swiglu else key


def max_output_difference(a: nn.Module, b: nn.Module, cfg: ExperimentConfig, device: torch.device) -> float:
    g = torch.Generator().manual_seed(1)
    t, s, f = cfg.model.template_size, cfg.model.search_size, cfg.model.template_feat_size
    inputs = (torch.randn(1, 3, t, t, generator=g).to(device), torch.randn(1, 3, s, s, generator=g).to(device),
              torch.randint(0, 2, (1, f, f), generator=g).to(device))
    with torch.inference_mode():
        out_a, out_b = a(*inputs), b(*inputs)
    return max((out_a[k] - out_b[k]).abs().max().item() for k in ("score_map", "boxes"))


def interleaved_latency(models: list[nn.Module], inputs: tuple[torch.Tensor, ...], dtype: str, warmup: int,
                        runs: int) -> list[list[float]]:
    """Per-call times (ms) of each model, the models taking turns call by call."""
    for model in models:
        measure_latency(model, inputs, dtype, warmup=warmup, runs=1)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(runs):
        for model, bucket in zip(models, times):
            bucket.append(measure_latency(model, inputs, dtype, warmup=0, runs=1).mean_ms)
    return times


def describe(label: str, times_ms: list[float]) -> str:
    mean = statistics.fmean(times_ms)
    return f"{label}: median {statistics.median(times_ms):8.2f} ms, mean {mean:8.2f} ms, {1000.0 / mean:7.1f} FPS"


def compare_engines(cfg: ExperimentConfig, names: list[str], device: torch.device, warmup: int, runs: int,
                    upstream: Path | None = None, upstream_amp: str = "bf16") -> None:
    """Latency of each engine (interleaved call by call) and its largest output deviation from fp32 eager. With
    `upstream`, the official model with the same weights takes its turn too, under `upstream_amp` autocast (its
    fastest CPU path is bf16 autocast, its GPU profiling setting fp16), and each engine's speed-up over it is
    printed."""
    model = build_model(cfg, training=False)
    randomise_layer_scale_(model)
    model = model.to(device)
    check = tuple(t.to(device) for t in random_inputs(model, batch=1, seed=1))
    with torch.inference_mode():
        reference = model(*check)
    engines, deviations = [], []
    if upstream is not None:
        official = build_upstream(upstream.resolve(), cfg, model).to(device)
        engines.append(TorchEngine(official, device, f"official {upstream_amp}", upstream_amp, amp=upstream_amp))
    for name in names:
        try:
            engines.append(build_engine(model, name, device))
        except EngineError as exc:
            print(f"  {name:12s} unavailable: {exc}")
    for engine in engines:
        out = engine(*check)
        deviations.append({k: (out[k] - reference[k].float()).abs().max().item() for k in ("score_map", "boxes")})
    times = interleaved_latency(engines, sample_inputs(cfg, 1, str(device)), "fp32", warmup, runs)
    medians = {engine.name: statistics.median(t) for engine, t in zip(engines, times)}
    baselines = [name for name in ("eager", f"official {upstream_amp}") if name in medians]
    for engine, engine_ms, deviation in zip(engines, times, deviations):
        speedups = "".join(f", {medians[b] / medians[engine.name]:4.2f}x {b}" for b in baselines if b != engine.name)
        print(f"  {describe(f'{engine.name:16s}', engine_ms)}{speedups}; max deviation from fp32 eager: score map "
              f"{deviation['score_map']:.2e}, boxes {deviation['boxes']:.2e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"],
                        help="autocast dtype; the weights stay fp32. Default: fp16 on GPU (upstream's profiling "
                             "setting, paper Table 2), fp32 on CPU")
    parser.add_argument("--runs", type=int, default=None, help="timed calls per model (default 100 GPU, 20 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="default 10 GPU, 3 CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--upstream", type=Path, default=None, help="checkout of github.com/LitingLin/LoRAT")
    parser.add_argument("--engines", nargs="+", default=None, choices=ENGINE_NAMES,
                        help="time these inference engines side by side (put eager first for speed-ups)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but no CUDA device is visible")
    if args.dtype is None:
        args.dtype = "fp16" if args.device == "cuda" else "fp32"
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    runs = args.runs if args.runs is not None else (100 if device.type == "cuda" else 20)
    warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 3)

    print(f"device: {device_description(device)}; dtype {args.dtype}; batch 1; {runs} runs after {warmup} warm-up")
    for variant in args.variants:
        cfg = load_experiment("lorat", variant)
        if args.engines:
            print(f"{variant}:")
            compare_engines(cfg, args.engines, device, warmup, runs, args.upstream,
                            "fp16" if device.type == "cuda" else "bf16")
            continue
        ours = build_model(cfg, training=False)
        inputs = sample_inputs(cfg, 1, args.device)
        if args.upstream is None:
            latency = measure_latency(ours.to(device), inputs, args.dtype, warmup=warmup, runs=runs)
            print(f"{variant:10s} median {latency.median_ms:8.2f} ms, mean {latency.mean_ms:8.2f} ms, "
                  f"{latency.fps:7.1f} FPS")
            continue
        randomise_layer_scale_(ours)
        theirs = build_upstream(args.upstream.resolve(), cfg, ours).to(device)
        ours = ours.to(device)
        diff = max_output_difference(ours, theirs, cfg, device)
        print(f"{variant}: max |ours - upstream| over score map and boxes (fp32, random input) = {diff:.2e}")
        if diff > 1e-5:
            raise SystemExit(f"{variant}: outputs differ from upstream by {diff:.2e}; timing would be meaningless")
        ours_ms, theirs_ms = interleaved_latency([ours, theirs], inputs, args.dtype, warmup, runs)
        print("  " + describe("ours    ", ours_ms))
        print("  " + describe("upstream", theirs_ms))
        print(f"  ratio ours/upstream (median): {statistics.median(ours_ms) / statistics.median(theirs_ms):.3f}")


if __name__ == "__main__":
    main()
