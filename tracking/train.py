"""Launch LoRAT training: one process (`--mode single`) or torchrun over GPUs/nodes (`--mode multiple`).

    python tracking/train.py --script lorat --config base_224 --save_dir ./output --mode multiple --nproc_per_node 8
    python tracking/train.py ... --nnodes 2 --node_rank 0 --master_addr 10.0.0.1 --master_port 29500

Rerunning the same command resumes from the newest readable checkpoint (lib/train/trainer.py: `Trainer.restore`).
Extra options go to lib/train/run_training.py (e.g. `--backbone_weights PATH`, `--init_checkpoint PATH`,
`--set train.epochs=3`). Exits with the children's status.

Fault tolerance: with `--max_restarts N`, torchrun (`torch.distributed.run --max-restarts`) restarts the whole
worker group up to N times when a worker fails (a crash, an out-of-memory kill, a lost GPU), and the restarted
group resumes from the newest checkpoint by itself, so at most the epochs since the last save are trained again.
Every node must pass the same `--max_restarts`. It needs torchrun, so it is an error with `--mode single`: use
`--mode multiple --nproc_per_node 1` for one process.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_command(args: argparse.Namespace, passthrough: list[str]) -> list[str]:
    """The process to start: this rank's entry point directly, or torchrun running it on every local rank."""
    run = ["-m", "lib.train.run_training", "--script", args.script, "--config", args.config,
           "--save_dir", args.save_dir, *passthrough]
    if args.mode == "single":
        return [sys.executable, *run]
    port = args.master_port or random.randint(20000, 40000)
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc_per_node}",
            f"--nnodes={args.nnodes}", f"--node_rank={args.node_rank}", f"--master_addr={args.master_addr}",
            f"--master_port={port}", f"--max-restarts={args.max_restarts}", *run]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """This launcher's options, and the rest (passed on to lib/train/run_training.py)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="lorat")
    parser.add_argument("--config", required=True)
    parser.add_argument("--save_dir", default="./output")
    parser.add_argument("--mode", choices=["single", "multiple"], default="multiple")
    parser.add_argument("--nproc_per_node", type=int, default=1)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node_rank", type=int, default=0)
    parser.add_argument("--master_addr", default="127.0.0.1")
    parser.add_argument("--master_port", type=int, default=None, help="default: a random free-ish port (one node)")
    parser.add_argument("--max_restarts", type=int, default=0,
                        help="restart a failed worker group up to N times; it resumes from the newest checkpoint")
    args, passthrough = parser.parse_known_args(argv)
    if args.max_restarts < 0:
        parser.error("--max_restarts must be >= 0")
    if args.max_restarts and args.mode == "single":
        parser.error("--max_restarts needs torchrun: use --mode multiple (with --nproc_per_node 1 for one process)")
    if args.nnodes > 1 and args.master_port is None:
        parser.error("--master_port is required with --nnodes > 1 (every node must use the same port)")
    return args, passthrough


def main(argv: list[str] | None = None) -> int:
    args, passthrough = parse_args(argv)
    command = build_command(args, passthrough)
    print(" ".join(command), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
