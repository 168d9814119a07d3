"""Score tracking results with the benchmark toolkits' conventions, print a table, optionally save JSON/plots.

    python tracking/analysis_results.py --script lorat --config base_224 --dataset lasot
    python tracking/analysis_results.py --script lorat --config base_224 --dataset lasot_extension_subset \
        --run_ids 0 1 2
    python tracking/analysis_results.py --dataset lasot --tracker lorat base_224 LoRAT-B --tracker static none --plot

Several run ids of one tracker are averaged the way the official code does (curves averaged over runs for
OPE, IoUs pooled for GOT-10k). Results are read from the files every time (no cache).

Each tracker's producer (results/<...>/producer.json: config, checkpoint with its hash, device, precision) is printed
above the table; run ids produced by different models are refused rather than averaged.

OPE numbers follow the official MATLAB toolkit; `--convention pytracking` instead reproduces the code path of
the published OSTrack / LoRAT tables (for comparison with them only).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lib.test.analysis.metrics import CONVENTIONS, format_table
from lib.test.analysis.plots import save_plots
from lib.test.evaluation.analysis import (
    MissingResultsError, MixedProducersError, TrackerEntry, evaluate_trackers, producer_summary, summary_rows,
)
from lib.test.evaluation.datasets import dataset_names, get_dataset
from lib.test.evaluation.environment import env_settings
from lib.test.evaluation.results import ResultsConflictError
from lib.utils.io import atomic_write_text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--dataset", "--dataset_name", dest="dataset", required=True,
                        help=f"benchmark: {', '.join(dataset_names())}")
    parser.add_argument("--script", help="tracker script (single-tracker form, with --config)")
    parser.add_argument("--config", help="config name (single-tracker form, with --script)")
    parser.add_argument("--run_ids", type=int, nargs="+", default=None,
                        help="run ids to merge (results in <config>_<id:03d>); applies to every tracker")
    parser.add_argument("--tracker", nargs="+", action="append", default=[], metavar="SCRIPT CONFIG [NAME]",
                        help="add a tracker to compare (repeatable)")
    parser.add_argument("--convention", choices=CONVENTIONS, default="toolkit",
                        help="OPE scoring: 'toolkit' (default) = the official LaSOT/TNL2K MATLAB toolkit; "
                             "'pytracking' reproduces the published OSTrack/LoRAT tables (pytracking code path, "
                             "incl. its LaSOT-ext / TNL2K quirk of counting absent or empty-GT frames as "
                             "normalised-precision hits) and is for comparison with them only")
    parser.add_argument("--json", type=Path, default=None, help="write {tracker: {metric: percent}} here")
    parser.add_argument("--plot", action="store_true",
                        help="save plots under <result_plot_path>/<dataset>/ (<dataset>_pytracking/ for "
                             "--convention pytracking)")
    parser.add_argument("--env_file", default=None, help="evaluation local.py (default lib/test/evaluation/local.py)")
    args = parser.parse_args(argv)
    if (args.script is None) != (args.config is None):
        parser.error("--script and --config go together")
    if args.script is None and not args.tracker:
        parser.error("name a tracker: --script S --config C, or one or more --tracker SCRIPT CONFIG [NAME]")
    for values in args.tracker:
        if len(values) not in (2, 3):
            parser.error(f"--tracker takes SCRIPT CONFIG [NAME], got {values}")
    return args


def tracker_entries(args: argparse.Namespace) -> list[TrackerEntry]:
    run_ids = None if args.run_ids is None else tuple(args.run_ids)
    entries = [TrackerEntry(args.script, args.config, run_ids)] if args.script else []
    entries += [TrackerEntry(v[0], v[1], run_ids, v[2] if len(v) == 3 else None) for v in args.tracker]
    return entries


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = env_settings(args.env_file)
    sequences = get_dataset(args.dataset, env)
    entries = tracker_entries(args)
    try:
        evaluations = evaluate_trackers(args.dataset, sequences, entries, env.results_path, args.convention)
    except (MissingResultsError, MixedProducersError, ResultsConflictError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = summary_rows(evaluations)
    print(f"{args.dataset}: {len(sequences)} sequences, {args.convention} convention")
    for entry in entries:
        print(f"  produced by {producer_summary(entry, env.results_path)}")
    print(format_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        curves = {name: ev["ope"]["curves"] for name, ev in evaluations.items() if "ope" in ev}
        if not curves:
            print(f"no OPE curves to plot for {args.dataset} (GOT-10k protocol only)", file=sys.stderr)
            return 0
        plot_name = args.dataset if args.convention == "toolkit" else f"{args.dataset}_{args.convention}"
        for path in save_plots(curves, plot_name, Path(env.result_plot_path) / plot_name):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
