"""Peak memory of one training step, LoRA vs full fine-tuning (paper Table 8: B-224, 16 samples: 2.4 vs 3.2 GB).

    python benchmarks/train_memory.py [--config base_224] [--batch 16] [--device cpu|cuda] [--amp fp32|fp16|bf16]

Each mode runs in its own process and does what the trainer does: forward under autocast, loss, backward, gradient
clipping, AdamW step. One warm-up step creates the optimizer state first, so the figure is the steady-state peak:
everything allocated (weights, optimizer state, inputs) plus the highest point reached by what the step allocates
on top (activations, gradients, temporaries). On CUDA it is `torch.cuda.max_memory_allocated`; on CPU it is counted
from the allocation and free events of the PyTorch profiler (`profile_memory=True`), i.e. tensor bytes, not the
process's resident size, which allocator caching makes useless for comparing two runs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from lib.utils.precision import PRECISIONS


GIB = 2**30


def _tensor_bytes(tensors) -> int:
    """Bytes of distinct storages among `tensors` (parameters that share storage count once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _profiled_peak_bytes(step) -> int:
    """Run `step()` under the profiler and return the highest net bytes it had allocated at any moment."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def one_step(config: str, fft: bool, batch: int, device: str, amp: str) -> dict[str, float]:
    import torch

    from lib.config import apply_overrides, load_experiment
    from lib.models import build_model
    from lib.models.profile import count_params
    from lib.train.loss import lorat_loss
    from lib.train.optim import build_optimizer
    from lib.utils.precision import autocast

    cfg = load_experiment("lorat", config + ("_fft" if fft else ""))
    cfg = apply_overrides(cfg, ["model.drop_path=0.0"])
    model = build_model(cfg, training=True).to(device)
    optimizer = build_optimizer(model, cfg.train.lr, cfg.train.weight_decay, layer_decay=cfg.train.layer_decay,
                                num_layers=len(model.blocks))
    params = [p for p in model.parameters() if p.requires_grad]
    t, s, f, g = cfg.model.template_size, cfg.model.search_size, cfg.model.template_feat_size, cfg.model.search_feat_size
    z, x = torch.randn(batch, 3, t, t, device=device), torch.randn(batch, 3, s, s, device=device)
    mask = torch.ones(batch, f, f, dtype=torch.long, device=device)
    gt = torch.tensor([[0.4, 0.4, 0.6, 0.6]], device=device).repeat(batch, 1)
    cells = torch.arange(g * g, device=device).view(g, g)[g // 2 - 1:g // 2 + 1, g // 2 - 1:g // 2 + 1].flatten()
    pos_b = torch.arange(batch, device=device).repeat_interleave(len(cells))
    pos_m = cells.repeat(batch)

    def step() -> None:
        with autocast(torch.device(device).type, amp):
            out = model(z, x, mask)
        loss, _ = lorat_loss(out["score_map"], out["boxes"], gt, pos_b, pos_m, float(len(pos_b)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # creates the AdamW state
    weights = _tensor_bytes(list(model.parameters()) + list(model.buffers()))
    opt_state = _tensor_bytes(v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        resident = weights + opt_state + _tensor_bytes([z, x, mask, gt, pos_b, pos_m])
        peak = resident + _profiled_peak_bytes(step)
    counts = count_params(model)
    return {"peak_gib": peak / GIB, "weights_gib": weights / GIB, "optimizer_gib": opt_state / GIB,
            "step_gib": (peak - resident) / GIB, "trainable_m": counts.trainable / 1e6, "total_m": counts.total / 1e6}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="base_224")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="fp32", choices=PRECISIONS,
                        help="autocast dtype (the paper's runs use fp16 on GPU)")
    parser.add_argument("--child", choices=["lora", "fft"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one_step(args.config, args.child == "fft", args.batch, args.device, args.amp)))
        return
    results = {}
    for mode in ("lora", "fft"):
        out = subprocess.run([sys.executable, __file__, "--config", args.config, "--batch", str(args.batch),
                              "--device", args.device, "--amp", args.amp, "--child", mode],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{mode} run failed:\n{out.stderr}")
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.config}, batch {args.batch}, {args.device}, autocast {args.amp}: steady-state peak of one training "
          f"step (forward, backward, clip, AdamW)")
    for mode, r in results.items():
        print(f"  {mode:4s}: peak {r['peak_gib']:.2f} GiB = weights {r['weights_gib']:.2f} + AdamW state "
              f"{r['optimizer_gib']:.2f} + inputs + step peak {r['step_gib']:.2f}; "
              f"trainable {r['trainable_m']:.1f} M of {r['total_m']:.1f} M")
    print(f"  LoRA / full fine-tuning memory: {results['lora']['peak_gib'] / results['fft']['peak_gib']:.2f} "
          f"(paper Table 8, B-224 on GPU: 2.4 / 3.2 GB = 0.75)")


if __name__ == "__main__":
    main()
