"""Parameters, MACs and forward speed of a LoRAT or LoRATv2 variant.

    python tracking/profile_model.py --script lorat --config base_224 [--device cpu|cuda|cuda:N]
                                     [--dtype fp32|fp16|bf16] [--engine NAME] [--batch N] [--runs N]
    python tracking/profile_model.py --script loratv2 --config p1_base_224 [--device ...] [--dtype ...]

`--engine` (lib/models/engines.py) times the model as that engine runs it; `--dtype` is the eager engine's autocast.
LoRATv2 reports the MACs of each tracking action (init, update_i, track_last; counted on the meta device, next to
upstream's figures) and times `track` of a pure `--dtype` model with its KV cache, as upstream tracks.
"""
from __future__ import annotations

import argparse


import torch

from lib.config import load_experiment
from lib.config import ExperimentConfig
from lib.models import build_model
from lib.models.engines import ENGINE_NAMES, EngineError, build_engine
from lib.models.profile import count_macs, count_params, loratv2_action_macs, measure_latency, sample_inputs
from lib.utils.device import DeviceError, resolve_device
from lib.utils.precision import AUTOCAST_DTYPES, PRECISIONS

# Upstream's per-action GMACs of LoRATv2 (docs/loratv2.md, "Compute"), by (backbone, search stream sizes).
LORATV2_REFERENCE_GMACS = {
    ("dinov2_reg4_vitb14", (224,)): {"init": 21.8, "track_0": 24.9},
    ("dinov2_reg4_vitl14", (224,)): {"init": 79.1, "track_0": 85.0},
    ("dinov2_reg4_vitb14", (224, 378)): {"init": 21.8, "update_0": 22.6, "track_1": 80.7},
    ("dinov2_reg4_vitl14", (224, 378)): {"init": 79.1, "update_0": 81.0, "track_1": 268.3},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="lorat")
    parser.add_argument("--config", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda or cuda:N (default: cuda when a GPU is visible)")
    parser.add_argument("--dtype", default=None, choices=PRECISIONS,
                        help="LoRAT: autocast dtype, the weights stay fp32; LoRATv2: the model's dtype (upstream tracks "
                             "with a pure fp16 model). Default: fp16 on GPU (upstream's profiling setting), fp32 on "
                             "CPU")
    parser.add_argument("--engine", default="eager", choices=ENGINE_NAMES,
                        help="inference engine (lib/models/engines.py); default: eager with --dtype autocast")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=None, help="default: 10 on GPU, 2 on CPU")
    parser.add_argument("--runs", type=int, default=None, help="default: 100 on GPU, 10 on CPU")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        parser.error(str(exc))
    cuda = device.type == "cuda"
    if args.dtype is not None and args.engine != "eager":
        parser.error(f"--dtype is the eager engine's autocast; engine {args.engine!r} sets its own precision")
    if args.dtype is None:
        args.dtype = "fp16" if cuda else "fp32"

    cfg = load_experiment(args.script, args.config)
    REPORTS.get(args.script, report_lorat)(cfg, args, device, parser)


def _timing(args: argparse.Namespace, device: torch.device) -> dict[str, int]:
    cuda = device.type == "cuda"
    return {"warmup": args.warmup if args.warmup is not None else (10 if cuda else 2),
            "runs": args.runs if args.runs is not None else (100 if cuda else 10)}


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def report_lorat(cfg: ExperimentConfig, args: argparse.Namespace, device: torch.device,
                 parser: argparse.ArgumentParser) -> None:
    train_counts = count_params(build_model(cfg, training=True))
    model = build_model(cfg, training=False).to(device)
    infer_total = count_params(model).total
    macs = count_macs(model, sample_inputs(cfg, 1))
    try:
        engine = build_engine(model, args.engine, device, amp=args.dtype)
    except EngineError as exc:
        parser.error(str(exc))
    latency = measure_latency(engine, sample_inputs(cfg, args.batch, device), "fp32", **_timing(args, device))

    print(f"{args.script}/{args.config}: {cfg.description}")
    print(f"  parameters (training build): {train_counts.total / 1e6:9.2f} M")
    print(f"  trainable:                   {train_counts.trainable / 1e6:9.2f} M  "
          f"(LoRA {train_counts.lora / 1e6:.2f} M, token-type embedding + head + other {train_counts.extra / 1e6:.2f} M)")
    print(f"  parameters (inference, merged): {infer_total / 1e6:6.2f} M")
    print(f"  MACs (batch 1, merged):      {macs / 1e9:9.2f} G")
    print(f"  latency ({_device_name(device)}, {args.engine} engine, {engine.precision}, batch {args.batch}): "
          f"mean {latency.mean_ms:.2f} ms, "
          f"median {latency.median_ms:.2f} ms, {latency.fps:.1f} FPS")


def report_loratv2(cfg: ExperimentConfig, args: argparse.Namespace, device: torch.device,
                   parser: argparse.ArgumentParser) -> None:
    if args.engine != "eager":
        parser.error("LoRATv2 runs eagerly with its KV cache: --engine applies to LoRAT only")
    with torch.device("meta"):  # counts and MACs need shapes only
        train_counts = count_params(build_model(cfg, training=True))
        macs = loratv2_action_macs(build_model(cfg, training=False))
    dtype = AUTOCAST_DTYPES[args.dtype] or torch.float32
    model = build_model(cfg, training=False).to(device, dtype)
    last = model.num_streams - 1
    size, feat = model.template_size, model.template_size // model.patch_size
    cache, slots = model.new_kv_cache(args.batch), torch.arange(args.batch, device=device)
    with torch.inference_mode():  # the earlier chunks are cached once, as in tracking
        model.init(torch.zeros(args.batch, 3, size, size, device=device, dtype=dtype),
                   torch.ones(args.batch, feat, feat, dtype=torch.long, device=device), cache, slots)
        for i in range(last):
            model.update(i, torch.zeros(args.batch, 3, model.search_sizes[i], model.search_sizes[i], device=device,
                                        dtype=dtype), cache, slots)
    x = torch.full((args.batch, 3, model.search_sizes[last], model.search_sizes[last]), 0.5, device=device,
                   dtype=dtype)
    latency = measure_latency(lambda crop: model.track(last, crop, cache, slots), (x,), "fp32",
                              **_timing(args, device))

    reference = LORATV2_REFERENCE_GMACS.get((cfg.model.backbone, cfg.model.search_sizes), {})
    print(f"{args.script}/{args.config}: {cfg.description}")
    print(f"  parameters (training build): {train_counts.total / 1e6:9.2f} M")
    print(f"  trainable:                   {train_counts.trainable / 1e6:9.2f} M  ({train_counts.trainable:,}; "
          f"LoRA {train_counts.lora / 1e6:.2f} M, token types + heads {train_counts.extra / 1e6:.2f} M)")
    for action, value in macs.items():
        upstream = f"   (upstream {reference[action]:.1f} G)" if action in reference else ""
        print(f"  MACs {action + ':':<22} {value / 1e9:9.2f} G{upstream}")
    print(f"  latency of track_{last} ({_device_name(device)}, {args.dtype} model, batch {args.batch}): "
          f"mean {latency.mean_ms:.2f} ms, median {latency.median_ms:.2f} ms, {latency.fps:.1f} FPS")


# Experiment script -> its report (LoRAT's for every other script).
REPORTS = {"loratv2": report_loratv2}


if __name__ == "__main__":
    main()
