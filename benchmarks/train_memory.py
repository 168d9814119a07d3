"""Peak memory of one training step, LoRA vs full fine-tuning (paper Table 8: B-224, 16 samples: 2.4 vs 3.2 GB).

    python benchmarks/train_memory.py [--config base_224] [--batch 16] [--device cpu|cuda]

Each mode runs in its own process (forward, loss, backward, AdamW step, as the trainer does). On CUDA the figure
is `torch.cuda.max_memory_allocated`; on CPU it is the growth of the process's peak resident memory (VmHWM, reset
after the model build) during the step, which includes allocator caching: compare the two modes with each other.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _status_gib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20  # kB -> GiB
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def _reset_peak_rss() -> float:
    """Reset the process's peak resident size to the current one (Linux clear_refs); return the current size."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_gib("VmRSS")


def one_step(config: str, fft: bool, batch: int, device: str) -> dict[str, float]:
    import torch

    from lib.config import apply_overrides, load_experiment
    from lib.models import build_model
    from lib.models.profile import count_params
    from lib.train.loss import lorat_loss
    from lib.train.optim import build_optimizer

    cfg = load_experiment("lorat", config + ("_fft" if fft else ""))
    cfg = apply_overrides(cfg, ["model.drop_path=0.0"])
    model = build_model(cfg, training=True).to(device)
    optimizer = build_optimizer(model, cfg.train.lr, cfg.train.weight_decay, layer_decay=cfg.train.layer_decay,
                                num_layers=len(model.blocks))
    t, s, f, g = cfg.model.template_size, cfg.model.search_size, cfg.model.template_feat_size, cfg.model.search_feat_size
    z, x = torch.randn(batch, 3, t, t, device=device), torch.randn(batch, 3, s, s, device=device)
    mask = torch.ones(batch, f, f, dtype=torch.long, device=device)
    gt = torch.tensor([[0.4, 0.4, 0.6, 0.6]], device=device).repeat(batch, 1)
    cells = torch.arange(g * g, device=device).view(g, g)[g // 2 - 1:g // 2 + 1, g // 2 - 1:g // 2 + 1].flatten()
    pos_b = torch.arange(batch, device=device).repeat_interleave(len(cells))
    pos_m = cells.repeat(batch)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        base_rss = _reset_peak_rss()
    with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
        out = model(z, x, mask)
    loss, _ = lorat_loss(out["score_map"], out["boxes"], gt, pos_b, pos_m, float(len(pos_b)))
    loss.backward()
    optimizer.step()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else _status_gib("VmHWM") - base_rss
    counts = count_params(model)
    return {"peak_gib": peak, "trainable_m": counts.trainable / 1e6, "total_m": counts.total / 1e6}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="base_224")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", choices=["lora", "fft"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one_step(args.config, args.child == "fft", args.batch, args.device)))
        return
    results = {}
    for mode in ("lora", "fft"):
        out = subprocess.run([sys.executable, __file__, "--config", args.config, "--batch", str(args.batch),
                              "--device", args.device, "--child", mode], capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.config}, batch {args.batch}, {args.device}: one training step (forward, backward, AdamW step)")
    for mode, r in results.items():
        print(f"  {mode:4s}: peak {r['peak_gib']:.2f} GiB, trainable {r['trainable_m']:.1f} M of {r['total_m']:.1f} M")
    print(f"  LoRA / full fine-tuning memory: {results['lora']['peak_gib'] / results['fft']['peak_gib']:.2f} "
          f"(paper Table 8, B-224 on GPU: 2.4 / 3.2 GB = 0.75)")


if __name__ == "__main__":
    main()
