"""Prepare a VOT toolkit workspace that runs our tracker (protocol trax, through this Python):

    python tracking/vot_setup.py --workspace W --script lorat --config base_224 --checkpoint C \
        [--engine E] [--stack vot2022/shorttermbox] [--venv DIR]
    DIR/bin/vot evaluate --workspace W lorat_base_224     # prints "Evaluation concluded" when done
    DIR/bin/vot analysis --workspace W lorat_base_224     # numbers in W/analysis/, HTML with `vot report`

Adds the tracker `<script>_<config>` to W/trackers.ini (an existing entry of that name is replaced, the others
kept). An existing W/config.yaml (your stack and sequences) is kept; without one, one is written for --stack.
--venv DIR creates the toolkit's own virtual environment there (PyPI vot-toolkit 0.9.0 with attributee 0.1.9) unless
it exists. `vot evaluate` exits 0 even when a tracker crashes: look for its "Evaluation concluded" line.
With vot-toolkit 0.9.0, bounding-box stacks run their `unsupervised` experiments; the `multistart` (VOT2020-2022
baseline, realtime) and `supervised` experiments stop inside the toolkit itself ("ObjectQuery.state must be a
Region") whatever the tracker; run those with `vot evaluate --experiments unsupervised` or a stack without them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.test.integrations.vot_workspace import (
    DEFAULT_STACK,
    create_toolkit_venv,
    ensure_config,
    register_tracker,
    tracker_command,
)
from lib.test.tracker import add_tracker_arguments, spec_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True, help="VOT workspace folder (created if missing)")
    parser.add_argument("--script", default="lorat")
    parser.add_argument("--config", required=True)
    add_tracker_arguments(parser, checkpoint_required=True)
    parser.add_argument("--stack", default=DEFAULT_STACK, help="stack for a new config.yaml (name or .yaml file)")
    parser.add_argument("--venv", type=Path, default=None, help="create the toolkit's virtual environment here")
    args = parser.parse_args(argv)
    try:
        spec = spec_from_args(args)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.workspace.mkdir(parents=True, exist_ok=True)
    stack = str(Path(args.stack).resolve()) if Path(args.stack).is_file() else args.stack
    wrote = ensure_config(args.workspace, stack)
    name = f"{spec.script}_{spec.config}"
    register_tracker(args.workspace, name, tracker_command(spec))
    vot = create_toolkit_venv(args.venv) if args.venv is not None else Path("vot")
    print(f"{'wrote' if wrote else 'kept'} {args.workspace / 'config.yaml'}; tracker {name} in "
          f"{args.workspace / 'trackers.ini'}\nnext:\n  {vot} evaluate --workspace {args.workspace} {name}\n"
          f"  {vot} analysis --workspace {args.workspace} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
