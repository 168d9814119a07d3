"""Reading the split lists shipped in lib/train/data_specs/."""
from __future__ import annotations

import os

DATA_SPECS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data_specs")


def read_split_list(filename: str) -> list[str]:
    """Non-empty lines of a split list file, in file order."""
    path = os.path.join(DATA_SPECS_DIR, filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split list {path} is missing; restore it from the repository")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]
