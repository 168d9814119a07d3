"""Pack a dataset folder into an LMDB (keys = file paths relative to the dataset root).

    python tracking/build_lmdb.py --dataset got10k            # got10k_dir -> got10k_lmdb_dir from local.py
    python tracking/build_lmdb.py --dataset lasot --root /data/lasot --out /fast/lasot_lmdb
    python tracking/build_lmdb.py --custom my_drones          # root -> lmdb of local.py's custom_datasets entry
    python tracking/build_lmdb.py --root /data/my_drones --out /fast/my_drones_lmdb   # any folder

Train with the packed datasets with `data.use_lmdb: true` (a custom dataset then needs its `lmdb` declared beside
its `root`, in local.py's custom_datasets or the experiment's data entry). The LMDB is built in `<out>.tmp` and
renamed when complete.
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


def folders(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, str]:
    """(dataset folder, LMDB to create): --root / --out, else the dataset's entries in local.py."""
    if args.root and args.out:
        return args.root, args.out
    if args.dataset is None and args.custom is None:
        parser.error("name a dataset (--dataset NAME or --custom NAME), or give both --root and --out")
    env = env_settings(args.local)
    if args.custom is not None:
        custom = env.custom_dataset(args.custom)
        if custom is None:
            parser.error(f"{env.source} declares no custom dataset {args.custom!r} in custom_datasets")
        root, out, hint = custom.root, custom.lmdb, f"'lmdb': '/path/{args.custom}_lmdb' in its custom_datasets entry"
    else:
        folder_field, lmdb_field = DATASET_FIELDS[args.dataset]
        root, out, hint = args.root or env.require(folder_field), getattr(env, lmdb_field), lmdb_field
    out = args.out or out
    if not out:
        parser.error(f"no output folder: pass --out or set {hint} in {env.source}")
    return args.root or root, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--dataset", choices=sorted(DATASET_FIELDS), help="a registered dataset of local.py")
    which.add_argument("--custom", metavar="NAME", help="a dataset of local.py's custom_datasets")
    parser.add_argument("--root", help="dataset folder (default: its path in lib/train/admin/local.py)")
    parser.add_argument("--out", help="LMDB folder to create (default: its LMDB path in local.py)")
    parser.add_argument("--local", help="path of an alternative training local.py")
    args = parser.parse_args(argv)
    root, out = folders(args, parser)
    count = pack_folder_to_lmdb(root, out, progress=lambda n, key: print(f"  {n} files packed (last: {key})"))
    print(f"packed {count} files of {root} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
