"""The whole pipeline on a CPU with nothing downloaded: synthesize data, train, track, score, plot.

    python tracking/demo.py [--minutes M] [--seed S] [--out DIR] [--quick]

1. Generates two synthetic domains A and B (GOT-10k layout) under data/synthetic/ unless present.
2. Stage 1, the paper's recipe in miniature: the demo's small ViT/14, pretrained on the broad synthetic domain P
   and shipped with the project (pretrained/vit_demo_p14_synthetic.pth, reproduced by
   tracking/pretrain_demo_backbone.py), stays frozen while LoRA adapters, the token-type embedding and the head
   train on domain A (experiments/lorat/demo.yaml, with tracking/train.py).
3. Stage 2: from stage 1's weights, new LoRA adapters (and the head) fine-tune on domain B
   (experiments/lorat/demo_lora.yaml).
4. Tracks both test splits with the evaluation runner, scores them with the analysis code and prints one table
   next to a static-box baseline (the first box repeated) and OpenCV's classic trackers (MIL; CSRT and KCF with
   the contrib build); writes success plots.

`--minutes` is the training budget (two thirds for stage 1, one third for stage 2, at an assumed
SAMPLES_PER_SECOND); `--quick` is a one-to-two-minute smoke run of every step.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2

from lib.config import apply_overrides, load_experiment
from lib.models import build_model
from lib.models.profile import count_params
from lib.test.analysis.metrics import format_table
from lib.test.analysis.plots import save_plots
from lib.test.evaluation.analysis import TrackerEntry, evaluate_trackers
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.environment import env_settings
from lib.test.evaluation.results import tracker_results_dir
from lib.test.evaluation.running import run_dataset
from lib.test.tracker import TrackerSpec
from lib.test.tracker.baselines import OPENCV_TRACKERS
from lib.train.launch import ROOT, train_on_cpu, write_local_files
from lib.utils.synthetic import ensure_demo_data

SAMPLES_PER_SECOND = 55  # training throughput assumed for --minutes (LoRA stages, measured on an idle 2-core CPU)
METRICS = ("AUC", "Precision", "NormPrecision", "AO", "SR0.5")


def training_overrides(quick: bool, minutes: float, share: float, seed: int) -> list[str]:
    if quick:
        return ["train.epochs=1", "data.samples_per_epoch=256", f"train.seed={seed}", "train.warmup_epochs=0.2"]
    per_epoch = 2048
    epochs = max(1, round(minutes * share * 60 * SAMPLES_PER_SECOND / per_epoch))
    return [f"train.epochs={epochs}", f"data.samples_per_epoch={per_epoch}", f"train.seed={seed}"]


def available_opencv() -> list[str]:
    """The OpenCV tracker scripts this OpenCV build has (CSRT and KCF only in the contrib build)."""
    found = [script for script, factory in OPENCV_TRACKERS.items() if hasattr(cv2, factory)]
    if len(found) < len(OPENCV_TRACKERS):
        print("note: this OpenCV build lacks CSRT/KCF (pip install opencv-contrib-python-headless)", flush=True)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=9.0, help="training budget in minutes (default 9)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="default: output/demo/<quick|seed<S>_<M>min>")
    parser.add_argument("--data_dir", default=str(ROOT / "data"), help="synthetic data goes to <data_dir>/synthetic")
    parser.add_argument("--quick", action="store_true", help="tiny data and training: checks every step works")
    args = parser.parse_args(argv)
    tag = f"quick_seed{args.seed}" if args.quick else f"seed{args.seed}_{args.minutes:g}min"
    out = Path(args.out or ROOT / "output" / "demo" / tag).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data_dir).resolve() / ("synthetic_quick" if args.quick else "")

    print(f"[1/4] synthetic domains A and B under {data_dir / 'synthetic'}", flush=True)
    ensure_demo_data(data_dir / "synthetic", seed=args.seed, quick=args.quick)
    write_local_files(data_dir, out)

    print("[2/4] stage 1: LoRA on the pretrained small ViT, domain A", flush=True)
    stage1 = train_on_cpu("demo", out, training_overrides(args.quick, args.minutes, 2 / 3, args.seed))
    print("[3/4] stage 2: LoRA fine-tuning on domain B from stage 1", flush=True)
    stage2_overrides = training_overrides(args.quick, args.minutes, 1 / 3, args.seed)
    stage2 = train_on_cpu("demo_lora", out, stage2_overrides, init=stage1)
    counts = count_params(build_model(apply_overrides(load_experiment("lorat", "demo_lora"), stage2_overrides),
                                      training=True))
    print(f"each stage trains {counts.trainable:,} of {counts.total:,} parameters "
          f"({100 * counts.trainable / counts.total:.1f}%: LoRA {counts.lora:,}, token types + head {counts.extra:,})")

    print("[4/4] tracking and scoring the test splits", flush=True)
    env = env_settings(str(out / "test_local.py"))
    classic = [("static box", TrackerSpec("static", "demo"))] + [
        (f"OpenCV {script.split('_')[1].upper()}", TrackerSpec(script, "demo")) for script in available_opencv()]
    trackers = {
        "A": [("stage-1 LoRAT", TrackerSpec("lorat", "demo", str(stage1))), *classic],
        "B": [("stage-1 LoRAT", TrackerSpec("lorat", "demo", str(stage1))),
              ("LoRA-tuned LoRAT", TrackerSpec("lorat", "demo_lora", str(stage2))), *classic],
    }
    rows: dict[str, dict[str, float]] = {}
    for domain, entries in trackers.items():
        dataset = f"synthetic_{domain.lower()}_test"
        sequences = get_dataset(dataset, env)
        for _, spec in entries:
            # OpenCV's trackers track one sequence per core in worker processes (one OpenCV thread each): MIL gains
            # most, it runs slower with two threads than with one. LoRAT uses every core itself, in this process.
            workers = (os.cpu_count() or 1) if spec.script in OPENCV_TRACKERS else 0
            report = run_dataset(spec, sequences, tracker_results_dir(env.results_path, spec.script, spec.config),
                                 threads=workers)
            if report.failures:
                raise SystemExit(f"demo: {len(report.failures)} sequences failed, e.g. {report.failures[0].error}")
        named = [TrackerEntry(spec.script, spec.config, display_name=name) for name, spec in entries]
        evaluations = evaluate_trackers(dataset, sequences, named, env.results_path)
        save_plots({name: ev["ope"]["curves"] for name, ev in evaluations.items()}, dataset,
                   Path(env.result_plot_path) / dataset)
        for name, ev in evaluations.items():
            rows[f"{name} on {domain}"] = {m: float(ev[p][m]) for p in ev for m in METRICS if m in ev[p]}

    print()
    print(format_table(rows, metrics=METRICS))
    print(f"\nplots: {Path(env.result_plot_path)}")
    for domain, ours in (("A", "stage-1 LoRAT"), ("B", "LoRA-tuned LoRAT")):
        margins = ", ".join(f"{rows[f'{ours} on {domain}']['AUC'] - rows[f'{name} on {domain}']['AUC']:+.1f} vs {name}"
                            for name, _ in classic)
        print(f"{ours} on {domain}, AUC points: {margins}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
