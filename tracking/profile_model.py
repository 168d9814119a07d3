"""Parameters, MACs and forward speed of a LoRAT variant.

    python tracking/profile_model.py --script lorat --config base_224 [--device cpu|cuda|cuda:N]
                                     [--dtype fp32|fp16|bf16] [--engine NAME] [--batch N] [--runs N]

`--engine` (lib/models/engines.py) times the model as that engine runs it; `--dtype` is the eager engine's autocast.
"""
from __future__ import annotations

import argparse


import torch

from lib.config import load_experiment
from lib.models import build_model
from lib.models.engines import ENGINE_NAMES, EngineError, build_engine
from lib.models.profile import count_macs, count_params, measure_latency, sample_inputs
from lib.utils.device import DeviceError, resolve_device
from lib.utils.precision import PRECISIONS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="lorat")
    parser.add_argument("--config", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda or cuda:N (default: cuda when a GPU is visible)")
    parser.add_argument("--dtype", default=None, choices=PRECISIONS,
                        help="autocast dtype; the weights stay fp32. Default: fp16 on GPU (upstream's profiling "
                             "setting, paper Table 2), fp32 on CPU")
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
    train_counts = count_params(build_model(cfg, training=True))
    model = build_model(cfg, training=False).to(device)
    infer_total = count_params(model).total
    macs = count_macs(model, sample_inputs(cfg, 1))
    try:
        engine = build_engine(model, args.engine, device, amp=args.dtype)
    except EngineError as exc:
        parser.error(str(exc))
    latency = measure_latency(engine, sample_inputs(cfg, args.batch, device), "fp32",
                              warmup=args.warmup if args.warmup is not None else (10 if cuda else 2),
                              runs=args.runs if args.runs is not None else (100 if cuda else 10))

    device_name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.script}/{args.config}: {cfg.description}")
    print(f"  parameters (training build): {train_counts.total / 1e6:9.2f} M")
    print(f"  trainable:                   {train_counts.trainable / 1e6:9.2f} M  "
          f"(LoRA {train_counts.lora / 1e6:.2f} M, token-type embedding + head + other {train_counts.extra / 1e6:.2f} M)")
    print(f"  parameters (inference, merged): {infer_total / 1e6:6.2f} M")
    print(f"  MACs (batch 1, merged):      {macs / 1e9:9.2f} G")
    print(f"  latency ({device_name}, {args.engine} engine, {engine.precision}, batch {args.batch}): "
          f"mean {latency.mean_ms:.2f} ms, "
          f"median {latency.median_ms:.2f} ms, {latency.fps:.1f} FPS")


if __name__ == "__main__":
    main()
