"""GOT-10k training sets (layout: lib/datasets/got10k.py); also used for synthetic datasets written in this layout.

Frames with absence=1 are invalid (upstream). cover.label (0..8 visible-ratio level) is read and kept on the
track when present; it does not change validity (upstream's default `absense_cover_level` is None).
The registry builds `train_full` (all of train/list.txt), `vottrain` (the 7086 indices of
data_specs/got10k_vot_train_split.txt into train/list.txt, VOT-overlapping videos removed) and `val`.
"""
from __future__ import annotations

from lib.datasets import got10k
from lib.train.dataset.base import Track, TrackingDataset, xywh_to_xyxy
from lib.train.dataset.specs import read_split_list
from lib.utils.lmdb_store import Store


class GOT10k(TrackingDataset):
    """Sequences of `<root>/<subset>/list.txt`, optionally restricted to the 0-based indices in a split list."""

    def __init__(self, store: Store, name: str, subset: str, index_file: str | None = None) -> None:
        super().__init__(store, name)
        with self.store.session():  # one LMDB handle for the whole parse
            names = got10k.sequence_names(store, subset)
            if index_file is not None:
                indices = read_split_list(index_file)
                if max(int(i) for i in indices) >= len(names):
                    raise ValueError(
                        f"{store.describe(f'{subset}/list.txt')} lists {len(names)} sequences, fewer than the split "
                        f"{index_file} indexes; use the complete GOT-10k train set"
                    )
                names = [names[int(i)] for i in indices]
            for seq_name in names:
                self._load(seq_name, f"{subset}/{seq_name}")

    def _load(self, seq_name: str, location: str) -> None:
        sequence = got10k.read_sequence(self.store, location)
        track = Track(xywh_to_xyxy(sequence.boxes.xywh), sequence.absence == 0, sequence.cover)
        self._add_sequence(seq_name, location, [track], self.store.image_size(self.frame_relpath(location, 0)))

    def frame_relpath(self, location: str, raw_index: int) -> str:
        return got10k.frame_relpath(location, raw_index)
