"""The training loop for one rank: data, forward/backward with AMP and DDP, schedule, checkpoints, logs.

Everything the loop needs is passed in explicitly (`TrainingRun`); `lib/train/run_training.py` assembles it from
the experiment config. What a step computes comes from the experiment script's actor (`lib/train/actor.py`).

Resuming: a rerun of the same command (or a worker group restarted by torchrun, `tracking/train.py --max_restarts`)
continues from the newest readable checkpoint of the run's folder. See `Trainer.restore`.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.config import ExperimentConfig
from lib.models import export_inference_checkpoint, merge_for_inference, trainable_state_dict
from lib.models.checkpoint import save_official_checkpoint
from lib.models.loratv2_checkpoint import save_official_checkpoint as save_loratv2_official_checkpoint
from lib.train.actor import build_actor
from lib.train.data.pairs import TrainingPairs
from lib.train.data.processing import collate
from lib.train.optim import WarmupCosineSchedule, build_optimizer
from lib.utils.distributed import DistInfo, all_reduce_mean, barrier, same_on_all_ranks
from lib.utils.io import atomic_torch_save, remove_stale_temp_files
from lib.utils.paths import RunPaths
from lib.utils.precision import AUTOCAST_DTYPES

logger = logging.getLogger("lorat.train")

CHECKPOINT_FORMAT = "lorat-train-v1"
CORRUPT_SUFFIX = ".corrupt"  # an unreadable checkpoint is renamed aside to <name>.corrupt (see Trainer.restore)


@dataclass
class TrainingRun:
    cfg: ExperimentConfig
    model: nn.Module  # the training build (adapters), on the run's device
    train_pairs: TrainingPairs
    val_pairs: TrainingPairs | None
    dist: DistInfo
    paths: RunPaths
    base: dict[str, str | None]  # where the frozen weights came from (backbone file, init checkpoint)
    num_workers: int


class Trainer:
    def __init__(self, run: TrainingRun) -> None:
        cfg, self.run = run.cfg, run
        world, accum = run.dist.world_size, cfg.train.grad_accum_steps
        if cfg.train.batch_size % (world * accum):
            raise ValueError(f"train.batch_size {cfg.train.batch_size} must be divisible by world size {world} x "
                             f"grad_accum_steps {accum}")
        if cfg.data.samples_per_epoch % cfg.train.batch_size:
            raise ValueError(f"data.samples_per_epoch {cfg.data.samples_per_epoch} must be a multiple of "
                             f"train.batch_size {cfg.train.batch_size}")
        self.micro_batch = cfg.train.batch_size // (world * accum)
        self.iters_per_epoch = cfg.data.samples_per_epoch // cfg.train.batch_size
        self.device = run.dist.device
        self.model = run.model
        self.optimizer = build_optimizer(self.model, cfg.train.lr, cfg.train.weight_decay,
                                         layer_decay=cfg.train.layer_decay,
                                         num_layers=len(self.model.blocks) if cfg.train.layer_decay else None)
        self.scheduler = WarmupCosineSchedule(self.optimizer, cfg.train.lr, cfg.train.warmup_lr, cfg.train.min_lr,
                                              warmup_steps=round(cfg.train.warmup_epochs * self.iters_per_epoch),
                                              total_steps=cfg.train.epochs * self.iters_per_epoch)
        cuda = self.device.type == "cuda"
        # The same precision and compile paths on every device (CPU autocast and GradScaler exist too), so what runs
        # on the GPU is what the CPU tests exercise; the CPU-only demo configs choose fp32 and eager.
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=AUTOCAST_DTYPES[cfg.train.amp] == torch.float16)
        # upstream's DDP settings; its static_graph cannot be combined with no_sync, which accumulation needs
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device.index] if cuda else None,
                                            find_unused_parameters=False, gradient_as_bucket_view=True,
                                            static_graph=accum == 1, bucket_cap_mb=100)
                    if run.dist.distributed else None)
        self.forward_model: nn.Module = self.model if self.ddp is None else self.ddp
        if cfg.train.compile:  # after DDP, so that its optimizer splits graphs at gradient-bucket boundaries
            self.forward_model = torch.compile(self.forward_model)
        self.actor = build_actor(cfg.script, self.forward_model, self.device.type, cfg.train.amp,
                                 cfg.train.iou_aware_target, num_streams=len(cfg.model.search_sizes))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.start_epoch = 0
        self.global_step = 0
        self.writer = None

    # ----------------------------------------------------------------------------------------------- state
    def state(self, epoch: int) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"format": CHECKPOINT_FORMAT, "epoch": epoch, "global_step": self.global_step,
                "config": self.run.cfg.to_dict(), "base": self.run.base, "model": trainable_state_dict(self.model),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng}

    def restore(self) -> Path | None:
        """Resume from the newest readable checkpoint of the run (None: nothing to resume, a fresh start).

        First, rank 0 deletes the temporary files that a save killed mid-write left behind (logged). A checkpoint
        that cannot be read (truncated or damaged after it was written, e.g. by a failing disk or a bad copy) is
        reported by name and the one before it is tried; once a readable one is found, rank 0 renames each damaged
        file to `<name>.corrupt`, kept for inspection and never picked again. If no checkpoint is readable, the
        run stops with an error naming them all rather than silently training from scratch over lost work. A
        readable checkpoint that does not belong to this run (other config or base weights) is always an error.
        """
        paths, main = self.run.paths, self.run.dist.is_main
        if main:
            removed = remove_stale_temp_files(paths.checkpoint_dir)
            if removed:
                logger.warning("removed %d temporary file(s) left by an interrupted save in %s: %s", len(removed),
                               paths.checkpoint_dir, ", ".join(p.name for p in removed))
        damaged: list[tuple[Path, str]] = []
        chosen = None
        for path in reversed(paths.checkpoints()):
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure to read the file means "damaged"
                first_line = next(iter(str(exc).splitlines()), "")  # torch's messages run over many lines
                damaged.append((path, f"{type(exc).__name__}: {first_line}"))
                logger.warning("checkpoint %s is unreadable (%s); trying the one before it", *damaged[-1])
                continue
            self.resume(path, ckpt)
            chosen = path
            break
        if damaged and chosen is None:
            listing = "; ".join(f"{p} ({why})" for p, why in damaged)
            raise RuntimeError(f"no readable checkpoint in {paths.checkpoint_dir}: {listing}. They were left as they "
                               f"are. Restore a good copy, or move these files away to train this run from scratch.")
        # every rank has read its checkpoint before rank 0 renames the damaged ones; and all read the same one
        # (a --save_dir that is not shared between nodes would otherwise mix a resumed rank with fresh ones)
        if not same_on_all_ranks(self.global_step, self.device):
            raise RuntimeError(f"the ranks found different checkpoints in {paths.checkpoint_dir} (rank "
                               f"{self.run.dist.rank}: {chosen or 'none'}); every node must see the same --save_dir")
        if main:
            for path, _ in damaged:
                aside = _free_name(path.with_name(path.name + CORRUPT_SUFFIX))
                os.replace(path, aside)
                logger.warning("resumed from %s instead of the unreadable %s, which is kept as %s", chosen.name,
                               path.name, aside)
        return chosen

    def resume(self, path: Path, ckpt: dict) -> None:
        """Load the training state `ckpt` (read from `path`) after checking that it belongs to this run."""
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a training checkpoint of this project (format {ckpt.get('format')!r})")
        saved_cfg = ExperimentConfig.from_dict(ckpt["config"], source=str(path))
        if saved_cfg != self.run.cfg:
            raise ValueError(f"{path} was written with a different config; resuming would mix two experiments. "
                             f"Use another --save_dir or restore the config it was trained with.")
        if ckpt["base"] != self.run.base:
            raise ValueError(f"{path} was trained on top of {ckpt['base']}, this run uses {self.run.base}")
        missing, unexpected = self.model.load_state_dict(ckpt["model"], strict=False)
        trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        if unexpected or trainable & set(missing):
            raise ValueError(f"{path}: does not fit the model (unexpected {unexpected}, missing "
                             f"{sorted(trainable & set(missing))})")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
        self.start_epoch, self.global_step = ckpt["epoch"], ckpt["global_step"]
        logger.info("resumed from %s (epoch %d done, step %d)", path, self.start_epoch, self.global_step)

    # ----------------------------------------------------------------------------------------------- loop
    def fit(self) -> Path | None:
        """Train to the configured number of epochs (resuming if possible); return the final export (rank 0)."""
        cfg, paths, main = self.run.cfg, self.run.paths, self.run.dist.is_main
        self.restore()
        if main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(paths.tensorboard_dir))
        for epoch in range(self.start_epoch, cfg.train.epochs):
            self.train_epoch(epoch)
            if self.run.val_pairs is not None and cfg.train.val_every and (epoch + 1) % cfg.train.val_every == 0:
                self.validate(epoch)
            if (epoch + 1) % cfg.train.save_every == 0 or epoch + 1 == cfg.train.epochs:
                if main:
                    atomic_torch_save(self.state(epoch + 1), paths.checkpoint(epoch + 1))
                    logger.info("saved %s", paths.checkpoint(epoch + 1))
                barrier()
        final = self.export() if main else None
        barrier()
        if self.writer is not None:
            self.writer.close()
        return final

    def _loader(self, pairs: TrainingPairs, epoch: int) -> DataLoader:
        pairs.set_epoch(epoch)
        return DataLoader(pairs, batch_size=self.micro_batch, num_workers=self.run.num_workers, collate_fn=collate,
                          pin_memory=self.device.type == "cuda", drop_last=True)

    def _step_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        missing = [k for k in self.actor.batch_keys if k not in batch]
        if missing:
            raise KeyError(f"the {type(self.actor).__name__} reads batch keys {missing} that the data pipeline "
                           f"does not provide (it gives {sorted(batch)})")
        return self.actor({k: batch[k].to(self.device, non_blocking=True) for k in self.actor.batch_keys})

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, accum = self.run.cfg, self.run.cfg.train.grad_accum_steps
        self.model.train()
        batches = iter(self._loader(self.run.train_pairs, epoch))
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        bar = tqdm(total=self.iters_per_epoch, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="it",
                   disable=not self.run.dist.is_main, dynamic_ncols=True)
        start = time.perf_counter()
        for it in range(self.iters_per_epoch):
            stats: dict[str, float] = {}
            for micro in range(accum):
                sync = micro == accum - 1 or self.ddp is None
                with nullcontext() if sync else self.ddp.no_sync():
                    loss, s = self._step_loss(next(batches))
                    self.scaler.scale(loss / accum).backward()
                for k, v in {"loss": loss.item(), **s}.items():
                    stats[k] = stats.get(k, 0.0) + v / accum
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.train.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            stats["lr"] = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            self.global_step += 1
            stats["grad_norm"] = float(grad_norm)
            if self.scaler.is_enabled():
                stats["loss_scale"] = self.scaler.get_scale()
            stats = all_reduce_mean(stats, self.device)  # the same on every rank, so all of them stop together
            if not math.isfinite(stats["loss"]):
                raise FloatingPointError(f"loss is {stats['loss']} at epoch {epoch + 1} iteration {it}")
            for k, v in stats.items():
                if math.isfinite(v):  # a step the fp16 scaler skipped has an inf/nan gradient norm
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
            samples_per_s = (it + 1) * cfg.train.batch_size / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", iou=f"{stats['iou']:.3f}", samples_s=f"{samples_per_s:.1f}")
            bar.update()
            if self.writer is not None:
                for k, v in {**stats, "samples_per_s": samples_per_s}.items():
                    if math.isfinite(v):
                        self.writer.add_scalar(f"train/{k}", v, self.global_step)
        bar.close()
        elapsed = time.perf_counter() - start
        means = {k: v / counts[k] for k, v in sums.items()}
        if self.scaler.is_enabled():
            means["skipped_steps"] = float(self.iters_per_epoch - counts.get("grad_norm", 0))
        means["samples_per_s"] = self.iters_per_epoch * cfg.train.batch_size / elapsed
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(f"epoch/{k}", v, epoch + 1)
        logger.info("epoch %d/%d: %s", epoch + 1, cfg.train.epochs, ", ".join(f"{k} {v:.4g}" for k, v in means.items()))
        return means

    @torch.no_grad()
    def validate(self, epoch: int) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, float] = {}
        count = 0
        for batch in self._loader(self.run.val_pairs, epoch):
            loss, s = self._step_loss(batch)
            for k, v in {"loss": loss.item(), **s}.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
        means = all_reduce_mean({k: v / max(count, 1) for k, v in sums.items()}, self.device)
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(f"val/{k}", v, epoch + 1)
        logger.info("validation after epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in means.items()))
        return means

    def export(self) -> Path:
        """The final model as one merged inference file, self-contained (every tensor of the inference build: for
        LoRATv2 phase 2 also the frozen phase-1 experts it was trained on), and, where the family has one
        (`RELEASE_WRITERS`), the official release layout."""
        cfg, paths = self.run.cfg, self.run.paths
        if cfg.script in RELEASE_WRITERS:
            RELEASE_WRITERS[cfg.script](self.model, cfg, paths.official_export(cfg.name))
        merged = merge_for_inference(copy.deepcopy(self.model).cpu())
        export_inference_checkpoint(merged, cfg, paths.final_export(cfg.name))
        logger.info("exported %s", paths.final_export(cfg.name))
        return paths.final_export(cfg.name)


def write_lorat_release(model: nn.Module, cfg: ExperimentConfig, path: Path) -> None:
    """LoRA runs of LoRAT: the trainable tensors in upstream's release layout (lib.models.checkpoint)."""
    if cfg.model.lora is not None:
        save_official_checkpoint(model, path, cfg.model.lora.alpha, cfg.model.lora.use_rslora,
                                 swiglu=cfg.model.backbone == "dinov2_vitg14")


def write_loratv2_release(model: nn.Module, cfg: ExperimentConfig, path: Path) -> None:
    """LoRATv2: upstream's file of the phase, its trainable tensors only (a phase-2 file loads with the phase-1 file
    as `base_checkpoint`; the merged export needs nothing else)."""
    save_loratv2_official_checkpoint(model, path)


# Experiment script -> writer of its official release layout next to the merged export (none: merged export only).
RELEASE_WRITERS: MappingProxyType[str, Callable[[nn.Module, ExperimentConfig, Path], None]] = MappingProxyType(
    {"lorat": write_lorat_release, "lorat_ablation": write_lorat_release, "lorat_timm": write_lorat_release,
     "loratv2": write_loratv2_release})


def _free_name(path: Path) -> Path:
    """`path`, or `path` with -2, -3, ... appended if that name is taken (a damaged file is never overwritten)."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate
