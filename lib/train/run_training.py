"""One training process (one rank). Launched by `tracking/train.py`, directly or through torchrun.

    python -m lib.train.run_training --script lorat --config base_224 --save_dir ./output

LoRATv2 trains in two phases; phase 2 starts from phase 1's final checkpoint:

    python -m lib.train.run_training --script loratv2 --config p1_base_224
    python -m lib.train.run_training --script loratv2 --config p2_base_378 \
        --init_checkpoint output/checkpoints/train/loratv2/p1_base_224/p1_base_224_final.pth
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import torch

from lib.config import ExperimentConfig, apply_overrides, load_experiment
from lib.models import build_model, default_backbone_weights, load_checkpoint
from lib.models.backbone import VIT_SPECS
from lib.train.admin.environment import env_settings
from lib.train.data.pairs import TrainingPairs
from lib.train.data.processing import LoRATProcessing
from lib.train.data.sampler import tuplet_rule
from lib.train.dataset import build_train_dataset
from lib.train.trainer import Trainer, TrainingRun
from lib.utils.distributed import DistInfo, cleanup, init_distributed
from lib.utils.paths import RunPaths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="lorat")
    parser.add_argument("--config", required=True)
    parser.add_argument("--save_dir", default="./output")
    parser.add_argument("--backbone_weights", default=None,
                        help="backbone weights: Meta DINOv2 .pth or timm .safetensors/.bin (default: "
                             "pretrained/<file of the config's backbone>); 'none' = random")
    parser.add_argument("--init_checkpoint", default=None,
                        help="start from a trained tracker (e.g. a previous stage's *_final.pth) instead; LoRATv2 "
                             "phase 2 needs its phase-1 final checkpoint here")
    parser.add_argument("--env_file", default=None, help="training local.py (default lib/train/admin/local.py)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="override config values, e.g. --set train.epochs=3 data.num_workers=0")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is visible")
    return parser


def continues_earlier_phase(cfg: ExperimentConfig) -> bool:
    """LoRATv2 phase 2 trains a new search stream on top of the frozen phase-1 experts: it needs the phase-1 final
    checkpoint (--init_checkpoint) and, since the new stream's expert starts from the pretrained linears (which
    the merged phase-1 experts no longer show), the backbone weights as well."""
    return cfg.model.loratv2 is not None and cfg.model.loratv2.phase == 2


def resolve_base(cfg: ExperimentConfig, backbone_weights: str | None, init_checkpoint: str | None) -> dict:
    """Which files provide the frozen/initial weights; recorded in checkpoints so a resume rebuilds the same."""
    if continues_earlier_phase(cfg) and init_checkpoint is None:
        raise ValueError(f"experiments/{cfg.script}/{cfg.name} is LoRATv2 phase 2: it trains on top of the frozen "
                         f"phase-1 experts. Pass the phase-1 final checkpoint: tracking/train.py --script "
                         f"{cfg.script} --config {cfg.name} --init_checkpoint <phase-1 final>, e.g. output/checkpoints"
                         f"/train/{cfg.script}/p1_base_224/p1_base_224_final.pth")
    replaced_by_init = init_checkpoint is not None and not continues_earlier_phase(cfg)
    if backbone_weights == "none" or replaced_by_init or VIT_SPECS[cfg.model.backbone].weights_file is None:
        weights = None if backbone_weights in (None, "none") else str(Path(backbone_weights).resolve())
    else:
        weights = str(Path(backbone_weights or default_backbone_weights(cfg)).resolve())
    return {"backbone_weights": weights,
            "init_checkpoint": str(Path(init_checkpoint).resolve()) if init_checkpoint else None}


def make_processing(cfg: ExperimentConfig) -> LoRATProcessing:
    """Crops of the template and of every search stream of `cfg.model.search_sizes`: the last one is the labelled
    search region (`data.search_area_factor`); streams in front of it are LoRATv2 phase 2's dynamic reference
    (`model.loratv2.reference_area_factor`). All search streams share the jitter settings."""
    references = [((size, size), cfg.model.loratv2.reference_area_factor) for size in cfg.model.search_sizes[:-1]]
    return LoRATProcessing(
        template_size=(cfg.model.template_size,) * 2, search_size=(cfg.model.search_size,) * 2,
        template_area_factor=cfg.data.template_area_factor, search_area_factor=cfg.data.search_area_factor,
        scale_jitter=cfg.data.scale_jitter, translation_jitter=cfg.data.translation_jitter,
        min_object_size=cfg.data.min_object_size, reference_streams=references, patch_stride=cfg.model.patch_size,
        mean=cfg.model.pixel_stats[0], std=cfg.model.pixel_stats[1])


def make_pairs(cfg: ExperimentConfig, entries, samples: int, seed: int, dist: DistInfo, env) -> TrainingPairs:
    """Training samples of `entries`: pairs, or the tuplets of the model's number of search streams."""
    datasets = [build_train_dataset(e, env, cfg.data.use_lmdb) for e in entries]
    return TrainingPairs(datasets, [e.weight for e in entries], samples, cfg.data.max_gap, make_processing(cfg),
                         seed, rank=dist.rank, world_size=dist.world_size,
                         tuplets=tuplet_rule(len(cfg.model.search_sizes)))


def setup_logging(paths: RunPaths, dist: DistInfo) -> None:
    handlers: list[logging.Handler] = []
    if dist.is_main:
        paths.log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(paths.log_file), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING, handlers=handlers or None,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cv2.setNumThreads(0)
    cfg = apply_overrides(load_experiment(args.script, args.config), args.overrides)
    dist = init_distributed(force_cpu=args.cpu)
    # On a CPU with several threads, two runs of the same command otherwise part in the last float bits within the
    # first steps (the demo's stage 1 then scored 40.67 and 41.30 AUC); the deterministic kernels cost no measurable
    # speed there (docs/benchmarks.md). Restored on return: tests and scripts call main() in their own process.
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic or dist.device.type == "cpu")
    try:
        paths = RunPaths.for_run(args.save_dir, cfg.script, cfg.name)
        paths.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        setup_logging(paths, dist)
        log = logging.getLogger("lorat.train")
        base = resolve_base(cfg, args.backbone_weights, args.init_checkpoint)
        model = build_model(cfg, training=True, backbone_weights=base["backbone_weights"])
        if base["init_checkpoint"]:
            report = load_checkpoint(model, base["init_checkpoint"], backbone_weights=base["backbone_weights"])
            log.info("initial weights: %s", report.summary())
        model.to(dist.device)
        env = env_settings(args.env_file)
        train_pairs = make_pairs(cfg, cfg.data.train, cfg.data.samples_per_epoch, cfg.train.seed, dist, env)
        val_pairs = (make_pairs(cfg, cfg.data.val, cfg.data.val_samples, cfg.train.seed + 1, dist, env)
                     if cfg.data.val and cfg.train.val_every else None)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info("%s/%s on %s x%d: %.2f M of %.2f M parameters trainable (%.2f%%); base %s", cfg.script, cfg.name,
                 dist.device, dist.world_size, trainable / 1e6, total / 1e6, 100 * trainable / total, base)
        run = TrainingRun(cfg, model, train_pairs, val_pairs, dist, paths, base, cfg.data.num_workers)
        final = Trainer(run).fit()
        if final is not None:
            log.info("done: %s", final)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        cleanup()
    return 0


# What a wrong input raises while the run is set up: a bad config or override, a missing file, an unknown dataset,
# a checkpoint that does not fit.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError)  # ConfigError and CheckpointError are ValueErrors


def command_line(argv: list[str] | None = None) -> int:
    """`main` as `python -m lib.train.run_training` (what tracking/train.py starts) runs it: a wrong input ends with
    its message and exit status 2, not a traceback that buries the message under library frames."""
    try:
        return main(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(command_line())
