"""Write the two editable path files: lib/train/admin/local.py and lib/test/evaluation/local.py.

    python tracking/create_default_local_file.py --workspace_dir . --data_dir ./data --save_dir ./output

An existing file is left untouched (and said so) unless --force is given.
"""
from __future__ import annotations

import argparse
import os
import sys

from lib.test.evaluation import environment as test_env
from lib.train.admin import environment as train_env
from lib.utils.io import atomic_write_text


def create_default_local_files(
    workspace_dir: str,
    data_dir: str,
    save_dir: str,
    force: bool = False,
    train_local: str = train_env.DEFAULT_LOCAL_PATH,
    test_local: str = test_env.DEFAULT_LOCAL_PATH,
) -> list[str]:
    """Write both local.py files; returns the paths written (an existing file is skipped without force)."""
    written = []
    for path, source in (
        (train_local, train_env.local_file_source(workspace_dir, data_dir, save_dir)),
        (test_local, test_env.local_file_source(workspace_dir, data_dir, save_dir)),
    ):
        if os.path.exists(path) and not force:
            print(f"{path} already exists; left untouched (pass --force to overwrite it).")
            continue
        atomic_write_text(path, source)
        print(f"wrote {path}")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace_dir", required=True, help="project root (pretrained/ lives here)")
    parser.add_argument("--data_dir", required=True, help="folder holding lasot/, got10k/, trackingnet/, coco/, ...")
    parser.add_argument("--save_dir", required=True, help="folder for checkpoints, logs, tensorboard, results")
    parser.add_argument("--force", action="store_true", help="overwrite existing local.py files")
    parser.add_argument("--train_local", default=train_env.DEFAULT_LOCAL_PATH, help="where to write the training file")
    parser.add_argument("--test_local", default=test_env.DEFAULT_LOCAL_PATH, help="where to write the evaluation file")
    args = parser.parse_args(argv)
    create_default_local_files(
        args.workspace_dir, args.data_dir, args.save_dir, args.force, args.train_local, args.test_local
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
