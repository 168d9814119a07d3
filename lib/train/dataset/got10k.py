"""GOT-10k layout: `<root>/<subset>/list.txt` and `<root>/<subset>/<seq>/{groundtruth.txt, absence.label,
cover.label, %08d.jpg}` (frames 1-based). Also used for synthetic datasets written in this layout.

Frames with absence=1 are invalid (upstream). cover.label (0..8 visible-ratio level) is read and kept on the
track when present; it does not change validity (upstream's default `absense_cover_level` is None).
The registry builds `train_full` (all of train/list.txt), `vottrain` (the 7086 indices of
data_specs/got10k_vot_train_split.txt into train/list.txt, VOT-overlapping videos removed) and `val`.
"""
from __future__ import annotations

from lib.train.dataset.base import Track, TrackingDataset, parse_int_flags, parse_number_rows, xywh_to_xyxy
from lib.train.dataset.specs import read_split_list
from lib.utils.lmdb_store import Store


class GOT10k(TrackingDataset):
    """Sequences of `<root>/<subset>/list.txt`, optionally restricted to the 0-based indices in a split list."""

    def __init__(self, store: Store, name: str, subset: str, index_file: str | None = None) -> None:
        super().__init__(store, name)
        with self.store.session():  # one LMDB handle for the whole parse
            list_path = f"{subset}/list.txt"
            names = [line.strip() for line in store.read_text(list_path).splitlines() if line.strip()]
            if index_file is not None:
                indices = read_split_list(index_file)
                if max(int(i) for i in indices) >= len(names):
                    raise ValueError(
                        f"{store.describe(list_path)} lists {len(names)} sequences, fewer than the split "
                        f"{index_file} indexes; use the complete GOT-10k train set"
                    )
                names = [names[int(i)] for i in indices]
            for seq_name in names:
                self._load(seq_name, f"{subset}/{seq_name}")

    def _load(self, seq_name: str, location: str) -> None:
        store = self.store
        gt_path = f"{location}/groundtruth.txt"
        boxes = parse_number_rows(store.read_text(gt_path), store.describe(gt_path), 4)
        labels = {}
        for label_file, allowed in (("absence.label", range(2)), ("cover.label", range(9))):
            path = f"{location}/{label_file}"
            if label_file == "cover.label" and not store.exists(path):
                labels[label_file] = None
                continue
            values = parse_int_flags(store.read_text(path), store.describe(path), allowed)
            if len(values) != len(boxes):
                raise ValueError(
                    f"{store.describe(path)} has {len(values)} labels but {store.describe(gt_path)} has "
                    f"{len(boxes)} boxes; the sequence is corrupt, re-download it"
                )
            labels[label_file] = values
        valid = labels["absence.label"] == 0
        image_size = store.image_size(self.frame_relpath(location, 0))
        self._add_sequence(seq_name, location, [Track(xywh_to_xyxy(boxes), valid, labels["cover.label"])], image_size)

    def frame_relpath(self, location: str, raw_index: int) -> str:
        return f"{location}/{raw_index + 1:08d}.jpg"
