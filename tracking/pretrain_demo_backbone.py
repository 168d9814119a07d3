"""Reproduce the demo's shipped backbone, pretrained/vit_demo_p14_synthetic.pth (160 epochs of 2048 samples: 55 to
100 minutes on 2 CPU cores, which train this model at 100 to 55 samples/s).

    python tracking/pretrain_demo_backbone.py [--out pretrained/vit_demo_p14_synthetic.pth] [--work_dir DIR]

The paper's trackers start from a backbone pretrained on a broad image collection (DINOv2). The demo's stand-in:
1. generates the broad synthetic domain P (every shape, texture, background kind and hue of the generator; its own
   random streams, apart from the demo's domains A and B);
2. phase 1 trains experiments/lorat/demo_pretrain.yaml (the demo's small ViT/14 from random weights, every parameter
   trainable, 100 epochs, the paper's search regions of 4 target sizes) on it with tracking/train.py;
3. phase 2 trains experiments/lorat/demo_pretrain2.yaml from phase 1's final weights (--init_checkpoint): a warm
   restart of the learning-rate schedule for 60 epochs with the demo's search regions of 3 target sizes;
4. writes phase 2's backbone (patch embedding, position grid, blocks, final norm) as a timm state dict in float16,
   the format `vit_demo_p14_synthetic` reads (lib/models/backbone.py), and prints its SHA-256.

Both phases resume when interrupted. Every random draw is seeded (`train.seed` 1000 and 1001, the data's own seed)
and CPU training uses deterministic kernels (two runs of the demo's stages gave byte-identical checkpoints; not
checked for this script's full run). The shipped file's SHA-256 (README) is not expected from a rerun: it was
trained before training on the CPU became deterministic.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lib.config import apply_overrides, load_experiment
from lib.models import build_model, load_checkpoint
from lib.models.backbone import DEMO_BACKBONE_FILE, PRETRAINED_DIR, create_vit, vit_state_from_lorat
from lib.test.tracker import file_sha256
from lib.train.launch import ROOT, train_on_cpu, write_local_files
from lib.utils.io import atomic_torch_save
from lib.utils.synthetic import ensure_synthetic_data, pretrain_specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(PRETRAINED_DIR / DEMO_BACKBONE_FILE))
    parser.add_argument("--work_dir", default=str(ROOT / "output" / "demo_pretrain"),
                        help="data, logs and checkpoints of the pretraining run (resumable)")
    parser.add_argument("--quick", action="store_true", help="tiny data and one short epoch: checks every step works")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides applied to both phases' configs, e.g. train.save_every=10")
    args = parser.parse_args(argv)
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"

    print(f"[1/4] synthetic domain P under {data_dir / 'synthetic'}", flush=True)
    ensure_synthetic_data(data_dir / "synthetic", pretrain_specs(args.quick))
    write_local_files(data_dir, work)

    quick = ["train.epochs=1", "data.samples_per_epoch=256", "train.warmup_epochs=0.2"] if args.quick else []
    overrides = quick + list(args.set)
    print("[2/4] phase 1: the small ViT/14 from random weights on domain P", flush=True)
    phase1 = train_on_cpu("demo_pretrain", work, overrides)
    print("[3/4] phase 2: a warm restart from phase 1 with the demo's search regions", flush=True)
    phase2 = train_on_cpu("demo_pretrain2", work, overrides, init=phase1)

    print(f"[4/4] writing the backbone to {args.out}", flush=True)
    cfg = apply_overrides(load_experiment("lorat", "demo_pretrain2"), overrides)
    model = build_model(cfg, training=False)
    load_checkpoint(model, phase2)
    state = vit_state_from_lorat(model, create_vit(cfg.model.backbone))
    atomic_torch_save({k: v.to(torch.float16) for k, v in state.items()}, Path(args.out))
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {size / 2**20:.1f} MiB, sha256 {file_sha256(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
