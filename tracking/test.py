"""Run a tracker on a benchmark and write resumable per-sequence result files.

    python tracking/test.py lorat base_224 --dataset_name lasot --threads 4 --num_gpus 2 --device cuda
    python tracking/test.py lorat base_224 --dataset_name got10k_test --engine int8          # CPU, int8 linears
    python tracking/test.py lorat base_224 --dataset_name lasot --device cuda --batch_sequences 32

Without --checkpoint a LoRAT config uses the trainer's output under the save_dir of --env_file
(<save_dir>/checkpoints/train/<script>/<config>/: <config>_final.pth, else the newest checkpoint file).

The results folder records what produced it in producer.json (config, checkpoint and backbone files with their
SHA-256, device type, engine, precision). Running the same command again resumes: finished sequences are skipped. A run
whose producer differs (another checkpoint, config, engine or precision) is refused, never mixed into the folder: use
--runid N for a separate folder, or --force to delete the old results and track again.
--engine picks how the model runs (lib/models/engines.py: eager, bf16, fp16, int8, onnxruntime, tensorrt).
--batch_sequences N tracks N sequences in lockstep in this process, one batched forward per step (the way to fill a
GPU; per-frame times are then the step's time shared among its sequences).
Exits non-zero if any sequence failed (each failure is printed with its traceback at the end).
"""
from __future__ import annotations

import argparse
import sys

from lib.test.evaluation.datasets import dataset_names, get_dataset
from lib.test.evaluation.environment import env_settings
from lib.test.evaluation.results import ResultsConflictError, tracker_results_dir
from lib.test.evaluation.running import run_dataset
from lib.test.tracker import TRACKER_BUILDERS, add_tracker_arguments, spec_from_args
from lib.utils.device import check_gpu_count, resolve_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("script", help=f"tracker script: {', '.join(TRACKER_BUILDERS)}")
    parser.add_argument("config", help="config name, e.g. base_224 (experiments/<script>/<config>.yaml)")
    parser.add_argument("--dataset_name", "--dataset", dest="dataset_name", required=True,
                        help=f"benchmark: {', '.join(dataset_names())}")
    parser.add_argument("--sequence", action="append", default=None,
                        help="run only this sequence (repeatable)")
    parser.add_argument("--threads", type=int, default=0, help="worker processes (0 = run in this process)")
    parser.add_argument("--num_gpus", type=int, default=1, help="worker k uses GPU k %% num_gpus (with --device cuda)")
    parser.add_argument("--runid", type=int, default=None, help="run id: results go to <config>_<runid:03d>")
    add_tracker_arguments(parser)
    parser.add_argument("--batch_sequences", type=int, default=1,
                        help="track this many sequences in lockstep, one batched forward per step (in this process)")
    parser.add_argument("--env_file", default=None, help="evaluation local.py (default lib/test/evaluation/local.py)")
    parser.add_argument("--force", action="store_true",
                        help="delete the results folder (every dataset in it) first and track again: the way to "
                             "replace results of another producer")
    return parser.parse_args(argv)


def select_sequences(sequences: list, names: list[str] | None) -> list:
    """The sequences named in `names` (all when None); unknown names are an error listing them."""
    if not names:
        return sequences
    by_name = {seq.name: seq for seq in sequences}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"error: sequence(s) {', '.join(unknown)} not in this dataset "
                         f"(first names: {', '.join(list(by_name)[:5])}, ...)")
    return [by_name[n] for n in names]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        env = env_settings(args.env_file)
        sequences = select_sequences(get_dataset(args.dataset_name, env), args.sequence)
        results_dir = tracker_results_dir(env.results_path, args.script, args.config, args.runid)
        resolve_device(args.device)
        if args.device == "cuda":
            check_gpu_count(args.num_gpus)
        spec = spec_from_args(args, env.save_dir)
    except KeyError as exc:
        raise SystemExit(f"error: {exc.args[0]}") from None
    except (ValueError, FileNotFoundError) as exc:  # DeviceError, ConfigError, CheckpointError are ValueErrors
        raise SystemExit(f"error: {exc}") from None
    print(f"{args.script}/{args.config} on {args.dataset_name}: {len(sequences)} sequences -> {results_dir}")
    if spec.checkpoint is not None:
        base = f" after {spec.base_checkpoint}" if spec.base_checkpoint else ""
        backbone = f" on backbone {spec.backbone_weights}" if spec.backbone_weights else ""
        print(f"weights: {spec.checkpoint}{base}{backbone}")
    try:
        report = run_dataset(spec, sequences, results_dir, args.threads, args.num_gpus, force=args.force,
                             batch_sequences=args.batch_sequences)
    except (ResultsConflictError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    done = len(report.outcomes) - len(report.failures)
    print(f"finished {done}, skipped {len(report.skipped)} already finished, failed {len(report.failures)}")
    for failure in report.failures:
        print(f"\nFAILED {failure.error}", file=sys.stderr)
    if report.failures:
        print(f"\n{len(report.failures)} sequence(s) failed: {', '.join(f.name for f in report.failures)}. "
              "Fix the cause and rerun the same command (finished sequences are skipped).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
