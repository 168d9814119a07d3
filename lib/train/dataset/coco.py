"""COCO 2017 detection data as tracking data: `<root>/annotations/instances_<subset>.json` (via pycocotools)
and `<root>/images/<subset>/<file_name>`.

Each image is a sequence of length 1 whose non-crowd objects are its tracks (crowd annotations excluded,
upstream `include_crowd: false`). Images are ordered by their first non-crowd annotation in the json and
objects by json order, as upstream; the image size comes from the json.
"""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
from pycocotools.coco import COCO as CocoApi

from lib.train.dataset.base import Track, TrackingDataset
from lib.utils.lmdb_store import Store


def _load_coco(store: Store, relpath: str) -> CocoApi:
    """pycocotools index over a json read through the store (works for folders and LMDBs alike)."""
    try:
        content = json.loads(store.read_bytes(relpath))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{store.describe(relpath)}:{exc.lineno}: invalid JSON ({exc.msg}); re-download it") from exc
    for key in ("images", "annotations"):
        if key not in content:
            raise ValueError(f"{store.describe(relpath)} has no {key!r} list; is it a COCO instances file?")
    api = CocoApi()
    api.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        api.createIndex()
    return api


class COCO(TrackingDataset):
    def __init__(self, store: Store, name: str = "coco2017_train", subset: str = "train2017") -> None:
        super().__init__(store, name)
        with self.store.session():  # one LMDB handle for the whole parse
            json_path = f"annotations/instances_{subset}.json"
            api = _load_coco(store, json_path)
            image_ids = dict.fromkeys(a["image_id"] for a in api.dataset["annotations"] if not a.get("iscrowd", 0))
            for image_id in image_ids:
                if image_id not in api.imgs:
                    raise ValueError(
                        f"{store.describe(json_path)}: an annotation refers to image id {image_id}, which is not in "
                        "'images'; the file is corrupt, re-download it"
                    )
                image = api.imgs[image_id]
                tracks = []
                for annotation in api.imgToAnns[image_id]:
                    if annotation.get("iscrowd", 0):
                        continue
                    bbox = annotation.get("bbox")
                    if bbox is None or len(bbox) != 4:
                        raise ValueError(
                            f"{store.describe(json_path)}: annotation id {annotation.get('id')} has bbox {bbox!r}, "
                            "expected [x, y, w, h]; the file is corrupt"
                        )
                    x, y, w, h = (float(v) for v in bbox)
                    tracks.append(Track(np.array([[x, y, x + w, y + h]]), np.ones(1, dtype=bool)))
                location = f"images/{subset}/{image['file_name']}"
                self._add_sequence(str(image["file_name"]), location, tracks, (image["width"], image["height"]))

    def frame_relpath(self, location: str, raw_index: int) -> str:
        return location
