"""Names and folders of the synthetic datasets (written by lib/utils/synthetic.py in the GOT-10k layout).

A synthetic dataset is named `synthetic_<domain>_<split>` everywhere (training registry, test registry, metrics):
the split is the last `_`-separated part, the domain everything before it (letters, digits and inner
underscores). Its files live at `<synthetic root>/<domain folder>/<split>`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SYNTHETIC_PREFIX = "synthetic_"
NAME_FORM = "synthetic_<domain>_<split>"
_NAME = re.compile(r"synthetic_(?P<domain>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*)_(?P<split>[A-Za-z0-9]+)")


@dataclass(frozen=True)
class SyntheticName:
    domain: str
    split: str


def is_synthetic_name(name: str) -> bool:
    """Whether `name` belongs to the synthetic family (then `parse_synthetic_name` validates it)."""
    return name.startswith(SYNTHETIC_PREFIX)


def parse_synthetic_name(name: str) -> SyntheticName:
    """`synthetic_shapes_hard_val` -> domain `shapes_hard`, split `val`; any other form is an error."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(
            f"synthetic dataset names are {NAME_FORM} (e.g. synthetic_a_train, synthetic_shapes_hard_val): letters "
            f"and digits, the split after the last '_'; got {name!r}"
        )
    return SyntheticName(match["domain"], match["split"])


def domain_dir(synthetic_root: str | Path, domain: str) -> Path:
    """The folder of `domain` under `synthetic_root`, matched ignoring case (dataset names say `synthetic_a_*`,
    the generator writes `A/`)."""
    root = Path(synthetic_root)
    found = [p for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower() == domain.lower()] if root.is_dir() else []
    if len(found) != 1:
        raise FileNotFoundError(f"expected one folder for synthetic domain {domain!r} (any case) in {root}, found "
                                f"{[p.name for p in found]}; generate the data first (python tracking/demo.py)")
    return found[0]
