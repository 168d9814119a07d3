"""On-disk dataset formats, read once for training and testing alike.

Each module reads one layout's annotation (boxes, visibility labels, frame list) from a folder or an LMDB through a
`lib.utils.lmdb_store.Store`; the training datasets (lib/train/dataset) and the test benchmarks
(lib/test/evaluation/datasets.py) both build on them, so a layout has one parser and one set of checks.
`FORMATS` names the layouts a custom dataset (your own folder) may use (lib/datasets/custom.py).
"""
from lib.datasets.custom import FORMATS

__all__ = ["FORMATS"]
