"""Reading the split lists shipped in lib/train/data_specs/."""
from __future__ import annotations

import os

from lib.datasets.text import read_name_list

DATA_SPECS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data_specs")


def read_split_list(filename: str) -> list[str]:
    """Non-empty lines of a split list file, in file order."""
    return read_name_list(os.path.join(DATA_SPECS_DIR, filename))
