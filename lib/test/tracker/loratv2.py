"""The LoRATv2 tracker: template (and, in phase 2, a dynamic reference) encoded once into a KV cache, one
search-stream pass per frame.

Follows upstream's LoRATv2 evaluation pipelines (https://github.com/LitingLin/LoRAT, trackit/runners/evaluation/
distributed/tracker_evaluator/default/pipelines/LoRATv2/phase_1.py and phase_2.py) with their published defects
fixed; docs/loratv2.md ("Tracking") lists what differs and why.

```python
spec = resolve_spec("loratv2", "p2_base_378", checkpoint="phase2.safetensors", base_checkpoint="phase1.safetensors")
tracker = build_tracker(spec)  # lib.test.tracker
tracker.initialize(first_frame_rgb, np.array([x, y, w, h]))
box_xywh, confidence = tracker.track(next_frame_rgb)  # box not clipped to the frame (upstream v2)
```

Per sequence: the template crop and its token-type mask from the frame-0 box go through `model.init` into the
sequence's KV-cache slot; phase 2 then writes the first reference (frame 0 cropped around its box) with
`model.update(0, ...)`. Every frame is one `model.track(last stream, ...)` over the cached chunks; in phase 2 a
confidence above `model.loratv2.update_threshold` re-encodes the reference from that frame around the new state box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lib.config import ExperimentConfig
from lib.models.backbone import create_vit
from lib.models.engines import EngineError, cast_parameters, engine_precision
from lib.models.loratv2 import KVCache
from lib.test.tracker import STREAMING_ENGINES, TrackerSpec
from lib.test.tracker.lorat import (
    CropMap, Normaliser, build_inference_model, first_frame_target, hann_window_2d, inference_precision, predicted_box,
    search_crop, select_prediction, updated_state,
)
from lib.utils import boxes as box_ops
from lib.utils.precision import AUTOCAST_DTYPES


def stream_dtype(precision: str) -> torch.dtype:
    """The dtype the whole model and its KV cache are cast to for a precision name (upstream tracks with a pure
    fp16 model and cache, no autocast)."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {precision!r}")
    return AUTOCAST_DTYPES[precision] or torch.float32


def kv_cache_bytes(cfg: ExperimentConfig, dtype: torch.dtype = torch.float16) -> int:
    """KV-cache bytes one tracked sequence holds: keys and values of every block over all chunks,
    ``2 * depth * T * D * itemsize`` with T = registers + template tokens + the tokens of every search stream.

    Read from the backbone's shape (built on the meta device: no weights are allocated)."""
    with torch.device("meta"):
        vit = create_vit(cfg.model.backbone)
    patch = cfg.model.patch_size
    tokens = vit.num_reg_tokens + sum((size // patch) ** 2 for size in (cfg.model.template_size,
                                                                        *cfg.model.search_sizes))
    return 2 * len(vit.blocks) * tokens * vit.embed_dim * torch.finfo(dtype).bits // 8


@dataclass
class StreamState:
    """One sequence: its KV-cache slot (None until its first tracked step, when the template and first reference
    are encoded; `template`, `mask`, `reference` wait there until then), the frame-0 mean used as crop fill, and the
    state box (xyxy, clipped to the frame)."""

    fill: np.ndarray
    box: np.ndarray
    template: torch.Tensor | None
    mask: torch.Tensor | None
    reference: torch.Tensor | None
    slot: int | None = None
    released: bool = False


class LoRATv2Tracker:
    """Upstream's LoRATv2 loop for one sequence (`initialize` / `track`) or several in lockstep (`start` /
    `track_batch` / `release`), all sequences sharing one KV cache with a slot each.

    ``model`` is the merged inference build (``build_model(cfg, training=False)``) on ``device``. ``engine``:
    "eager" runs fp32, or on CUDA the model cast to ``test.amp`` (fp16 like upstream; no autocast); "fp16" and
    "bf16" cast the model to that dtype on any device. The cache has the model's dtype. New sequences are encoded
    in one batched `init` at the next `track_batch`; the cache grows to the number of live sequences and a released
    sequence's slot is reused.
    """

    def __init__(self, model: nn.Module, cfg: ExperimentConfig, device: str | torch.device = "cpu",
                 engine: str = "eager") -> None:
        if cfg.model.loratv2 is None:
            raise ValueError(f"experiments/{cfg.script}/{cfg.name} has no model.loratv2 section: not a LoRATv2 "
                             f"config")
        if engine not in STREAMING_ENGINES:
            raise EngineError(f"LoRATv2 tracks step by step with a KV cache, which engine {engine!r} does not "
                              f"support; use one of {', '.join(STREAMING_ENGINES)}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.precision = engine_precision(engine, inference_precision(cfg, self.device.type))
        self.dtype = stream_dtype(self.precision)
        self.model = model.to(self.device) if self.dtype == torch.float32 else \
            cast_parameters(model, self.dtype, self.device)
        self._phase = cfg.model.loratv2.phase
        self._last = len(cfg.model.search_sizes) - 1  # the stream tracked every frame; 0..last-1 are references
        self._normalise = Normaliser(self.device, cfg.model.pixel_stats)
        feat = cfg.model.search_feat_size
        self._window = hann_window_2d(feat, feat).to(self.device)
        self._crop_scale = np.array([cfg.model.search_size] * 4, dtype=np.float32)
        self.cache: KVCache | None = None  # grows to the number of live sequences
        self._free: list[int] = []
        self._state: StreamState | None = None

    # ---- crops ----

    def _crops(self, images: list[np.ndarray], states: list[StreamState], size: int,
               area_factor: float) -> tuple[torch.Tensor, list[CropMap]]:
        """SiamFC crops (side `size`) of each image around its state's box, as one model-dtype batch."""
        batch = torch.empty((len(states), 3, size, size), device=self.device)
        maps = [search_crop(image, state.box, area_factor, size, self.cfg.test.min_box_size, state.fill,
                            self._normalise, batch[i]) for i, (image, state) in enumerate(zip(images, states))]
        return batch.to(self.dtype), maps

    def _references(self, images: list[np.ndarray], states: list[StreamState]) -> torch.Tensor:
        v2 = self.cfg.model.loratv2
        return self._crops(images, states, v2.reference_size, v2.reference_area_factor)[0]

    # ---- KV-cache slots ----

    def _allocate(self, count: int) -> list[int]:
        """`count` free slots, growing the cache (its live rows copied) when there are not enough."""
        missing = count - len(self._free)
        if missing > 0:
            old = self.cache
            capacity = (0 if old is None else old.capacity) + missing
            with torch.inference_mode():
                new = self.model.new_kv_cache(capacity, dtype=self.dtype, device=self.device)
                if old is not None:
                    for a, b in zip(new.keys + new.values, old.keys + old.values):
                        a[:old.capacity].copy_(b)
            self._free += range(capacity - missing, capacity)
            self.cache = new
        slots, self._free = self._free[:count], self._free[count:]
        return slots

    def release(self, state: StreamState) -> None:
        """The sequence has ended: its slot is free for the next one."""
        if state.slot is not None:
            self._free.append(state.slot)
        state.slot, state.template, state.mask, state.reference, state.released = None, None, None, None, True

    def _slots(self, states: list[StreamState]) -> torch.Tensor:
        return torch.tensor([s.slot for s in states], dtype=torch.long, device=self.device)

    def _encode_new(self, states: list[StreamState]) -> None:
        """Template K/V (and phase 2's first reference) of sequences that have not been encoded yet, batched."""
        new = [s for s in states if s.slot is None]
        if not new:
            return
        for state, slot in zip(new, self._allocate(len(new))):
            state.slot = slot
        slots = self._slots(new)
        self.model.init(torch.cat([s.template for s in new]), torch.cat([s.mask for s in new]), self.cache, slots)
        if self._phase == 2:
            self.model.update(0, torch.cat([s.reference for s in new]), self.cache, slots)
        for state in new:
            state.template, state.mask, state.reference = None, None, None

    # ---- the tracker protocol ----

    def start(self, image: np.ndarray, box_xywh: np.ndarray) -> StreamState:
        """A new sequence: template crop and mask from the frame-0 box and, in phase 2, the first reference crop
        (frame 0 around that box; upstream, as coded, crops frame 1 there instead)."""
        target = first_frame_target(image, box_xywh, self.cfg, self._normalise)
        state = StreamState(target.fill, target.box, target.template.to(self.dtype), target.template_mask, None)
        if self._phase == 2:
            state.reference = self._references([image], [state])
        return state

    def initialize(self, image: np.ndarray, box_xywh: np.ndarray) -> None:
        """Start (or restart) the single-sequence loop; the previous sequence's slot is reused."""
        state = self.start(image, box_xywh)
        if self._state is not None:
            self.release(self._state)
        self._state = state

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Box ``x, y, w, h`` (not clipped to the frame) and the unpenalised score of the chosen cell."""
        if self._state is None:
            raise RuntimeError("LoRATv2Tracker.track() called before initialize()")
        return self.track_batch([self._state], [image])[0]

    def track_batch(self, states: list[StreamState], images: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        """The next frame of each state's sequence: one batched `track` of the last stream, then (phase 2) one
        batched reference `update` for the sequences whose confidence passed the threshold."""
        if len(states) != len(images) or not states:
            raise ValueError(f"track_batch needs one image per state, got {len(states)} states and {len(images)} "
                             f"images")
        if any(s.released for s in states):
            raise RuntimeError("track_batch got a released sequence state; start() a new one")
        test = self.cfg.test
        results = []
        with torch.inference_mode():
            self._encode_new(states)
            search, maps = self._crops(images, states, self.cfg.model.search_size, test.search_area_factor)
            output = self.model.track(self._last, search, self.cache, self._slots(states))
            for i, (state, crop) in enumerate(zip(states, maps)):
                box_normalised, confidence = select_prediction(output["score_map"][i], output["boxes"][i],
                                                               self._window, test.window_penalty)
                predicted = predicted_box(box_normalised, self._crop_scale, crop)
                state.box = updated_state(state.box, predicted, crop.image_size)
                results.append((box_ops.xyxy_to_xywh(predicted), confidence))
            if self._phase == 2:
                threshold = self.cfg.model.loratv2.update_threshold
                passed = [i for i, (_, confidence) in enumerate(results) if confidence > threshold]
                if passed:
                    chosen = [states[i] for i in passed]
                    references = self._references([images[i] for i in passed], chosen)
                    self.model.update(0, references, self.cache, self._slots(chosen))
        return results


def build_tracker(cfg: ExperimentConfig, spec: TrackerSpec) -> LoRATv2Tracker:
    """The merged inference model with exactly the weights named in `spec` (`build_inference_model`), tracked on
    `spec.device` with `spec.engine`."""
    return LoRATv2Tracker(build_inference_model(cfg, spec), cfg, spec.device, spec.engine)
