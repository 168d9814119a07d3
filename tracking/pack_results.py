"""Pack GOT-10k test / TrackingNet results into the zip each evaluation server expects.

    python tracking/pack_results.py --script lorat --config base_224 --dataset got10k_test
    python tracking/pack_results.py --script lorat --config base_224_got10k --dataset got10k_test --run_ids 0 1 2

GOT-10k: several run ids go into one zip as <seq>_001/_002/_003.txt. TrackingNet: one zip per run id.
The zips go to <packed_results_path>/; the result files are not touched. Run ids produced by different models
(producer.json: config, checkpoint, backbone) are refused rather than packed together.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.test.evaluation.analysis import (
    MissingResultsError, MixedProducersError, TrackerEntry, check_results_dirs_exist, check_same_model,
    producer_summary,
)
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.environment import env_settings
from lib.test.evaluation.results import ResultsConflictError, tracker_results_dir
from lib.test.utils.packing import PACKERS, pack_results, zip_groups


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--script", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--dataset", "--dataset_name", dest="dataset", required=True, choices=list(PACKERS))
    parser.add_argument("--run_ids", type=int, nargs="+", default=None, help="run ids (results in <config>_<id:03d>)")
    parser.add_argument("--no_rasterize", action="store_true",
                        help="keep float boxes (default: rasterize like the official LoRAT writers)")
    parser.add_argument("--out_dir", type=Path, default=None, help="default: <packed_results_path> from local.py")
    parser.add_argument("--env_file", default=None, help="evaluation local.py (default lib/test/evaluation/local.py)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = env_settings(args.env_file)
    sequences = get_dataset(args.dataset, env)
    out_dir = args.out_dir or Path(env.packed_results_path)
    run_ids = [None] if args.run_ids is None else args.run_ids
    entry = TrackerEntry(args.script, args.config, None if args.run_ids is None else tuple(args.run_ids))
    try:
        check_results_dirs_exist(entry, env.results_path)
        check_same_model(entry, env.results_path)
    except (MissingResultsError, MixedProducersError, ResultsConflictError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"produced by {producer_summary(entry, env.results_path)}")
    for group_ids in zip_groups(args.dataset, run_ids):
        group_dirs = [tracker_results_dir(env.results_path, args.script, args.config, i) for i in group_ids]
        suffix = "".join(f"_{i:03d}" for i in group_ids if i is not None)
        out = out_dir / f"{args.script}_{args.config}{suffix}_{args.dataset}.zip"
        pack_results(args.dataset, sequences, group_dirs, out, rasterize_boxes=not args.no_rasterize)
        print(f"wrote {out} ({len(sequences)} sequences, {len(group_dirs)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
