"""Tracker per-frame overhead (crop, normalisation, post-processing, map-back) vs the merged model's forward.

    python -m benchmarks.tracker_speed --config base_224 --frames 100 --runs 10   (from the repository root)
    python -m benchmarks.tracker_speed --config base_224 --engines eager bf16 int8

The forward is timed alone (random weights, batch 1, on CPU) for each inference engine (lib/models/engines.py) named
with `--engines` (default: eager, fp32). The overhead is timed by running the real
`LoRATTracker` on 1280x720 frames with a stand-in model that returns a precomputed output instantly (score
peaked at the centre cell, box at the crop centre with the state's size), so everything measured is tracker
work. Target: overhead below 5% of each engine's forward.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from lib.config import ExperimentConfig, load_experiment
from lib.models import build_model
from lib.models.engines import ENGINE_NAMES, build_engine
from lib.models.profile import measure_latency, sample_inputs
from lib.test.tracker.lorat import LoRATTracker

FRAME_SIZE = (1280, 720)  # (W, H)
TARGETS_WH = {"small target 40x30": (40., 30.), "medium target 160x120": (160., 120.),
              "large target 480x360": (480., 360.)}


class InstantModel(nn.Module):
    """Returns the same output every frame: the centre cell wins and predicts the state box again (the search
    crop spans `search_area_factor` box sides, so the box is the central 1/factor of the crop)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__()
        feat = cfg.model.search_feat_size
        half = 0.5 / cfg.test.search_area_factor
        score = torch.full((1, feat, feat), -5.)
        score[0, feat // 2, feat // 2] = 5.
        boxes = torch.tensor([0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half]).expand(1, feat, feat, 4)
        self.output = {"score_map": score, "boxes": boxes.contiguous()}

    def forward(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.output


def video_frames(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Textured RGB uint8 frames (content does not change the work done, only keeps the crops realistic)."""
    width, height = FRAME_SIZE
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(count)]


def tracker_overhead_ms(cfg: ExperimentConfig, frames: list[np.ndarray], target_wh: tuple[float, float]) -> float:
    """Median wall time of `track()` with an instant model, i.e. the tracker's own per-frame work."""
    tracker = LoRATTracker(InstantModel(cfg), cfg, "cpu")
    width, height = FRAME_SIZE
    tracker.initialize(frames[0], np.array([(width - target_wh[0]) / 2, (height - target_wh[1]) / 2, *target_wh]))
    times = []
    for frame in frames[1:]:
        start = time.perf_counter()
        tracker.track(frame)
        times.append((time.perf_counter() - start) * 1000.)
    return statistics.median(times[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="base_224", help="experiments/lorat/<config>.yaml")
    parser.add_argument("--frames", type=int, default=100, help="frames per overhead measurement")
    parser.add_argument("--runs", type=int, default=10, help="timed forwards (after 3 warm-up runs)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--engines", nargs="+", default=["eager"], choices=ENGINE_NAMES,
                        help="inference engines whose forward the overhead is compared with")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_experiment("lorat", args.config)

    model = build_model(cfg, training=False)
    forwards = {}
    for name in args.engines:
        engine = build_engine(model, name, "cpu")
        forwards[name] = measure_latency(engine, sample_inputs(cfg), "fp32", warmup=3, runs=args.runs)
        print(f"{args.config} merged forward, CPU, engine {name} ({engine.precision}), {torch.get_num_threads()} "
              f"threads: median {forwards[name].median_ms:.1f} ms, mean {forwards[name].mean_ms:.1f} ms")

    frames = video_frames(args.frames + 1, np.random.default_rng(0))
    for label, target_wh in TARGETS_WH.items():
        overhead = tracker_overhead_ms(cfg, frames, target_wh)
        shares = ", ".join(f"{100. * overhead / f.median_ms:.2f}% of {name}" for name, f in forwards.items())
        print(f"tracker overhead on {FRAME_SIZE[0]}x{FRAME_SIZE[1]}, {label}: median {overhead:.2f} ms = {shares}")


if __name__ == "__main__":
    main()
