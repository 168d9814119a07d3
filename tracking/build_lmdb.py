"""Pack a dataset folder into an LMDB (keys = file paths relative to the dataset root).

    python tracking/build_lmdb.py --dataset got10k            # got10k_dir -> got10k_lmdb_dir from local.py
    python tracking/build_lmdb.py --dataset lasot --root /data/lasot --out /fast/lasot_lmdb

Train with the packed datasets by passing use_lmdb to the dataset builder. The LMDB is built in
`<out>.tmp` and renamed when complete.
"""
from __future__ import annotations

import argparse
import sys

from lib.train.admin.environment import env_settings
from lib.utils.lmdb_store import pack_folder_to_lmdb

# dataset -> (folder field, LMDB field) of lib/train/admin/local.py
DATASET_FIELDS = {
    "lasot": ("lasot_dir", "lasot_lmdb_dir"),
    "got10k": ("got10k_dir", "got10k_lmdb_dir"),
    "trackingnet": ("trackingnet_dir", "trackingnet_lmdb_dir"),
    "coco": ("coco_dir", "coco_lmdb_dir"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASET_FIELDS))
    parser.add_argument("--root", help="dataset folder (default: its path in lib/train/admin/local.py)")
    parser.add_argument("--out", help="LMDB folder to create (default: its *_lmdb_dir in local.py)")
    parser.add_argument("--local", help="path of an alternative training local.py")
    args = parser.parse_args(argv)
    folder_field, lmdb_field = DATASET_FIELDS[args.dataset]
    env = None if args.root and args.out else env_settings(args.local)
    root = args.root or env.require(folder_field)
    out = args.out or getattr(env, lmdb_field)
    if not out:
        parser.error(f"no output folder: pass --out or set {lmdb_field} in {env.source}")
    count = pack_folder_to_lmdb(root, out, progress=lambda n, key: print(f"  {n} files packed (last: {key})"))
    print(f"packed {count} files of {root} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
