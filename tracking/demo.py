"""The whole pipeline on a CPU with nothing downloaded: synthesize data, train, track, score, plot.

    python tracking/demo.py [--minutes M] [--seed S] [--out DIR] [--quick]

1. Generates two synthetic domains A and B (GOT-10k layout) under data/synthetic/ unless present.
2. Stage 1, standing in for a pretrained backbone: trains experiments/lorat/demo.yaml (a small ViT/14, every
   parameter trainable) on domain A with tracking/train.py.
3. Stage 2, the paper's recipe in miniature: from stage 1's weights, fine-tunes on domain B with LoRA only
   (experiments/lorat/demo_lora.yaml: backbone frozen; adapters, token-type embedding and head train).
4. Tracks both test splits with the evaluation runner, scores them with the analysis code and prints one table
   next to a static-box baseline (the first box repeated) and OpenCV's MIL tracker; writes success plots.

`--minutes` is the training budget (two thirds for stage 1, one third for stage 2, at an assumed 70 training
samples/s); `--quick` is a one-to-two-minute smoke run of every step.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

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
from lib.utils.paths import RunPaths
from lib.utils.synthetic import ensure_demo_data

ROOT = Path(__file__).resolve().parents[1]

SAMPLES_PER_SECOND = 70  # training throughput assumed for --minutes (measured on an idle 2-core CPU)
METRICS = ("AUC", "Precision", "NormPrecision", "AO", "SR0.5")


def training_overrides(quick: bool, minutes: float, share: float, seed: int) -> list[str]:
    if quick:
        return ["train.epochs=1", "data.samples_per_epoch=256", f"train.seed={seed}", "train.warmup_epochs=0.2"]
    per_epoch = 2048
    epochs = max(1, round(minutes * share * 60 * SAMPLES_PER_SECOND / per_epoch))
    return [f"train.epochs={epochs}", f"data.samples_per_epoch={per_epoch}", f"train.seed={seed}"]


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise SystemExit(f"demo: step failed: {' '.join(command)}")


def train(config: str, out: Path, overrides: list[str], init: Path | None = None) -> Path:
    command = [sys.executable, "tracking/train.py", "--mode", "single", "--script", "lorat", "--config", config,
               "--save_dir", str(out), "--env_file", str(out / "train_local.py"), "--cpu"]
    if init is not None:
        command += ["--init_checkpoint", str(init)]
    run(command + ["--set", *overrides])
    return RunPaths.for_run(out, "lorat", config).final_export(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget in minutes (default 10)")
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
    run([sys.executable, "tracking/create_default_local_file.py", "--workspace_dir", str(ROOT), "--data_dir",
         str(data_dir), "--save_dir", str(out), "--train_local", str(out / "train_local.py"),
         "--test_local", str(out / "test_local.py"), "--force"])

    print("[2/4] stage 1: small ViT trained from scratch on domain A", flush=True)
    stage1 = train("demo", out, training_overrides(args.quick, args.minutes, 2 / 3, args.seed))
    print("[3/4] stage 2: LoRA fine-tuning on domain B from stage 1", flush=True)
    stage2_overrides = training_overrides(args.quick, args.minutes, 1 / 3, args.seed)
    stage2 = train("demo_lora", out, stage2_overrides, init=stage1)
    counts = count_params(build_model(apply_overrides(load_experiment("lorat", "demo_lora"), stage2_overrides),
                                      training=True))
    print(f"stage 2 trains {counts.trainable:,} of {counts.total:,} parameters "
          f"({100 * counts.trainable / counts.total:.1f}%: LoRA {counts.lora:,}, token types + head {counts.extra:,})")

    print("[4/4] tracking and scoring the test splits", flush=True)
    env = env_settings(str(out / "test_local.py"))
    trackers = {
        "A": [("stage-1 LoRAT", TrackerSpec("lorat", "demo", str(stage1))), ("static box", TrackerSpec("static", "demo")),
              ("OpenCV MIL", TrackerSpec("opencv_mil", "demo"))],
        "B": [("stage-1 LoRAT", TrackerSpec("lorat", "demo", str(stage1))),
              ("LoRA-tuned LoRAT", TrackerSpec("lorat", "demo_lora", str(stage2))),
              ("static box", TrackerSpec("static", "demo")), ("OpenCV MIL", TrackerSpec("opencv_mil", "demo"))],
    }
    rows: dict[str, dict[str, float]] = {}
    for domain, entries in trackers.items():
        dataset = f"synthetic_{domain.lower()}_test"
        sequences = get_dataset(dataset, env)
        for _, spec in entries:
            report = run_dataset(spec, sequences, tracker_results_dir(env.results_path, spec.script, spec.config))
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
    gain_a = rows["stage-1 LoRAT on A"]["AUC"] - rows["static box on A"]["AUC"]
    gain_b = rows["LoRA-tuned LoRAT on B"]["AUC"] - rows["stage-1 LoRAT on B"]["AUC"]
    print(f"stage 1 vs static box on A: {gain_a:+.1f} AUC points; LoRA-tuned vs stage 1 on B: {gain_b:+.1f} AUC points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
