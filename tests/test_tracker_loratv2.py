"""LoRATv2 tracker: the cached streaming loop against a hand-written loop over the full chunked forward, the
published inference defects (B1, B3, B4) staying fixed, reference updates, unclipped reports, lockstep, KV-cache
memory, weights and engines, and a run through the evaluation runner.

Geometry tests use a stand-in with the model's streaming API at the real crop sizes (224 template, 224 reference,
378 search); frames are the coordinate ramps of test_tracker_lorat, so the affine map of every crop the stand-in
receives can be read back from its pixels.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import shlex
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from lib.config import ExperimentConfig, load_experiment
from lib.models import CheckpointError, build_model, export_inference_checkpoint, load_checkpoint
from lib.models.engines import EngineError
from lib.models.loratv2 import KVCache
from lib.models.loratv2_checkpoint import save_official_checkpoint
from lib.test.evaluation.analysis import TrackerEntry, evaluate_trackers, summary_rows
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results import (producer_differences, read_producer, read_sequence_boxes,
                                         tracker_results_dir)
from lib.test.evaluation.running import run_dataset, track_lockstep
from lib.test.integrations.vot_workspace import tracker_command
from lib.test.tracker import (TrackerSpec, add_tracker_arguments, build_tracker, producer_record, resolve_spec,
                                spec_arguments, spec_from_args)
from lib.test.tracker.api import Tracker
from lib.test.tracker.loratv2 import LoRATv2Tracker, kv_cache_bytes
from lib.utils import boxes as box_ops
from lib.utils.crop import (crop_and_resize, image_mean, search_params_for_tracking, siamfc_crop_params,
                            template_foreground_mask)
from lib.utils.synthetic import SyntheticSpec, generate_sequence, write_got10k
from test_eval_helpers import make_env, make_got10k_split, write_local_file
from test_tracker_lorat import FRAME_W, pixels, ramp_frame, recover_map

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
HIGH, LOW = 8.0, -8.0
P1, P2 = load_experiment("loratv2", "p1_base_224"), load_experiment("loratv2", "p2_base_378")
DEMO_P1, DEMO_P2 = load_experiment("loratv2", "demo_p1"), load_experiment("loratv2", "demo_p2")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def with_threshold(cfg: ExperimentConfig, threshold: float) -> ExperimentConfig:
    v2 = dataclasses.replace(cfg.model.loratv2, update_threshold=threshold)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, loratv2=v2))


# ------------------------------------------------------------------ stand-in with the streaming API

class StreamStandIn(nn.Module):
    """Records every streaming call (action, stream index, input shape, slots, first crop's pixels). `track`
    answers the true image box `truth(call)` (xyxy) in crop coordinates at the cell holding its centre, with logit
    `logit` there and LOW elsewhere (decoys 40 px away), so the tracker's argmax and mapping are visible."""

    def __init__(self, cfg: ExperimentConfig, truth: Callable[[int], np.ndarray], logit: float = HIGH) -> None:
        super().__init__()
        patch = cfg.model.patch_size
        self.num_streams = len(cfg.model.search_sizes)
        self.chunk_sizes = (4 + (cfg.model.template_size // patch) ** 2,
                            *((s // patch) ** 2 for s in cfg.model.search_sizes))
        self.truth, self.logit = truth, logit
        self.calls: list[dict] = []
        self.weight = nn.Parameter(torch.zeros(1))

    def new_kv_cache(self, capacity: int, dtype: torch.dtype | None = None, device=None) -> KVCache:
        return KVCache((torch.zeros(capacity, 1, 1, 1, dtype=dtype),), (torch.zeros(capacity, 1, 1, 1, dtype=dtype),))

    def _record(self, action: str, index: int | None, x: torch.Tensor, slots: torch.Tensor, **extra) -> None:
        self.calls.append({"action": action, "index": index, "shape": tuple(x.shape), "slots": slots.tolist(),
                           "pixels": pixels(x[0]), **extra})

    def init(self, z, z_feat_mask, cache, slots) -> None:
        self._record("init", None, z, slots, mask=z_feat_mask.clone())

    def update(self, index, x, cache, slots) -> None:
        self._record("update", index, x, slots)

    def track(self, index, x, cache, slots) -> dict[str, torch.Tensor]:
        self._record("track", index, x, slots)
        size, feat = x.shape[-1], x.shape[-1] // 14
        call = sum(c["action"] == "track" for c in self.calls) - 1
        scale, translation = recover_map(pixels(x[0]))
        box = (np.asarray(self.truth(call), dtype=np.float64).reshape(2, 2) * scale + translation).reshape(4) / size
        col, row = np.clip(((box[:2] + box[2:]) / 2 * feat).astype(int), 0, feat - 1)
        score = np.full((feat, feat), LOW)
        score[row, col] = self.logit
        boxes = np.tile(box + 40. / size, (feat, feat, 1))
        boxes[row, col] = box
        return {"score_map": torch.tensor(score, dtype=torch.float32)[None],
                "boxes": torch.tensor(boxes, dtype=torch.float32)[None]}

    def of(self, action: str) -> list[dict]:
        return [c for c in self.calls if c["action"] == action]


def crop_centre_in_image(crop: np.ndarray) -> np.ndarray:
    """The image point the crop's centre shows, read from the ramp."""
    scale, translation = recover_map(crop)
    return (crop.shape[0] / 2 - translation) / scale


@pytest.mark.parametrize("cfg, cells", [(P1, (4, 12)), (DEMO_P1, (1, 3))])
def test_b1_template_mask_has_the_template_grid_and_marks_the_target(cfg, cells):
    # Box (100, 90, 116, 106), centre (108, 98); template side with area factor 2: sqrt(32 * 32) = 32 px.
    # 224 px template: scale 7, box in the crop (56, 56, 168, 168) / stride 14 = cells 4..11 per axis.
    # 56 px demo template: scale 1.75, box (14, 14, 42, 42) / 14 = cells 1..2. (Upstream's B1 made the grid
    # template_size * 14 cells wide: 3136 x 3136.)
    model = StreamStandIn(cfg, lambda call: np.array([100., 90., 116., 106.]))
    tracker = LoRATv2Tracker(model, cfg)
    tracker.initialize(ramp_frame(), np.array([100., 90., 16., 16.]))
    tracker.track(ramp_frame())
    [init] = model.of("init")
    feat = cfg.model.template_size // 14
    expected = np.zeros((1, feat, feat), dtype=np.int64)
    expected[0, cells[0]:cells[1], cells[0]:cells[1]] = 1
    assert init["mask"].dtype == torch.int64
    np.testing.assert_array_equal(init["mask"].numpy(), expected)
    assert init["shape"] == (1, 3, cfg.model.template_size, cfg.model.template_size)
    np.testing.assert_allclose(crop_centre_in_image(init["pixels"]), [108., 98.], atol=0.1)


def test_b3_b4_reference_and_search_streams_phase2():
    # Phase 2 at upstream's sizes: reference 224 px (area factor 4) as stream 0 via update, search 378 px (area
    # factor 5) as stream 1 via track. Truth: the target moves right 6 px per frame, 16 x 16.
    truth = lambda call: np.array([100. + 6 * (call + 1), 90., 116. + 6 * (call + 1), 106.])  # noqa: E731
    model = StreamStandIn(P2, truth)
    tracker = LoRATv2Tracker(model, P2)
    tracker.initialize(ramp_frame(), np.array([100., 90., 16., 16.]))
    for _ in range(3):
        tracker.track(ramp_frame())
    actions = [(c["action"], c["index"], c["shape"]) for c in model.calls]
    update, track = ("update", 0, (1, 3, 224, 224)), ("track", 1, (1, 3, 378, 378))
    assert actions == [("init", None, (1, 3, 224, 224)), update, track, update, track, update, track, update]
    # Every reference crop: 224 px over a side of 4 * 16 = 64 px (scale 3.5) around the state box of that moment:
    # GT(0) first (frame 0 itself here; upstream as coded crops frame 1 there), then each frame's new box (which
    # comes back through the float32 head output, so the pixel-aligned crop may take a 65th input pixel).
    for k, ref in enumerate(model.of("update")):
        scale, _ = recover_map(ref["pixels"])
        np.testing.assert_allclose(scale, [3.5, 3.5], rtol=1e-4 if k == 0 else 1.6e-2)
        np.testing.assert_allclose(crop_centre_in_image(ref["pixels"]), [108. + 6 * k, 98.], atol=0.5)
    # Every search crop: 378 px over 5 * 16 = 80 px (scale 4.725; the pixel-aligned crop may take one more input
    # row or column) around the state box before that frame.
    for k, search in enumerate(model.of("track")):
        scale, _ = recover_map(search["pixels"])
        np.testing.assert_allclose(scale, [4.725, 4.725], rtol=1.5e-2)
        np.testing.assert_allclose(crop_centre_in_image(search["pixels"]), [108. + 6 * k, 98.], atol=0.5)


def test_phase1_tracks_stream_0_and_never_updates():
    model = StreamStandIn(P1, lambda call: np.array([100., 90., 120., 110.]))
    tracker = LoRATv2Tracker(model, P1)
    tracker.initialize(ramp_frame(), np.array([100., 90., 20., 20.]))
    for _ in range(3):
        box, confidence = tracker.track(ramp_frame())
        np.testing.assert_allclose(box, [100., 90., 20., 20.], atol=1e-3)
        assert confidence == pytest.approx(1. / (1. + np.exp(-HIGH)), abs=1e-6)
    assert [(c["action"], c["index"], c["shape"][-1]) for c in model.calls] == \
        [("init", None, 224)] + [("track", 0, 224)] * 3


@pytest.mark.parametrize("threshold, logit, updates", [
    (-1., HIGH, 1 + 4),  # every frame re-encodes the reference
    (2., HIGH, 1),       # never: only the first reference
    (0.5, 0., 1),        # confidence exactly 0.5 (sigmoid(0)) is not above 0.5: strict
    (0.4999, 0., 1 + 4),
])
def test_reference_update_only_above_the_threshold(threshold, logit, updates):
    model = StreamStandIn(P2, lambda call: np.array([100., 90., 120., 110.]), logit=logit)
    tracker = LoRATv2Tracker(model, with_threshold(P2, threshold))
    tracker.initialize(ramp_frame(), np.array([100., 90., 20., 20.]))
    for _ in range(4):
        _, confidence = tracker.track(ramp_frame())
        assert confidence == pytest.approx(1. / (1. + np.exp(-logit)), abs=1e-7)
    assert len(model.of("update")) == updates


def test_reported_box_is_not_clipped_but_the_state_box_is():
    # Frame 1: the target reaches 10 px past the left border. Reported as predicted, (-10, 50, 40, 30); the state
    # (and so the next search and reference crops) is the clipped box (0, 50, 30, 80), centre (15, 65).
    answers = [np.array([-10., 50., 30., 80.]), np.array([0., 50., 30., 80.])]
    model = StreamStandIn(P2, lambda call: answers[call])
    tracker = LoRATv2Tracker(model, P2)
    tracker.initialize(ramp_frame(), np.array([5., 50., 30., 30.]))
    box, _ = tracker.track(ramp_frame())
    np.testing.assert_allclose(box, [-10., 50., 40., 30.], atol=1e-3)
    tracker.track(ramp_frame())
    np.testing.assert_allclose(crop_centre_in_image(model.of("update")[1]["pixels"]), [15., 65.], atol=0.5)
    np.testing.assert_allclose(crop_centre_in_image(model.of("track")[1]["pixels"]), [15., 65.], atol=0.5)


def test_a_box_off_the_frame_keeps_the_previous_state():
    answers = [np.array([FRAME_W + 10., 50., FRAME_W + 40., 80.]), np.array([0., 0., 1., 1.])]
    model = StreamStandIn(P1, lambda call: answers[call])
    tracker = LoRATv2Tracker(model, P1)
    tracker.initialize(ramp_frame(), np.array([100., 90., 20., 20.]))
    box, _ = tracker.track(ramp_frame())
    np.testing.assert_allclose(box, [FRAME_W + 10., 50., 30., 30.], atol=1e-3)  # reported anyway
    tracker.track(ramp_frame())
    np.testing.assert_allclose(crop_centre_in_image(model.of("track")[1]["pixels"]), [110., 100.], atol=0.5)


def test_padding_of_every_crop_is_the_first_frame_mean():
    first, later = ramp_frame(blue=0), ramp_frame(blue=200)
    model = StreamStandIn(P2, lambda call: np.array([2., 100., 22., 120.]), logit=HIGH)
    tracker = LoRATv2Tracker(model, with_threshold(P2, -1.))
    tracker.initialize(first, np.array([2., 100., 20., 20.]))
    tracker.track(later)
    first_mean = image_mean(first)
    for call in model.calls:  # template, first reference, search and the reference of frame 1: left of x = 0
        np.testing.assert_allclose(call["pixels"][:, 0], np.broadcast_to(first_mean, (call["shape"][-1], 3)),
                                   atol=2e-3)
    first_reference, second_reference = (c["pixels"] for c in model.of("update"))
    np.testing.assert_allclose(first_reference[:, -1, 2], 0., atol=2e-3)  # the first reference shows frame 0
    np.testing.assert_allclose(second_reference[:, -1, 2], 200., atol=2e-3)  # the update after frame 1: frame 1


def test_protocol_errors():
    tracker = LoRATv2Tracker(StreamStandIn(P1, lambda call: np.zeros(4)), P1)
    with pytest.raises(RuntimeError, match="before initialize"):
        tracker.track(ramp_frame())
    with pytest.raises(ValueError, match="positive width and height"):
        tracker.initialize(ramp_frame(), np.array([10., 10., 0., 5.]))
    with pytest.raises(ValueError, match="one image per state"):
        tracker.track_batch([tracker.start(ramp_frame(), np.array([10., 10., 5., 5.]))], [])
    with pytest.raises(ValueError, match="no model.loratv2 section"):
        LoRATv2Tracker(StreamStandIn(P1, lambda call: np.zeros(4)), load_experiment("lorat", "demo"))


# ------------------------------------------------------------------ the real model, random weights

def normalised(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((crop / 255. - MEAN) / STD).transpose(2, 0, 1)).float()[None]


def crop_at(image, box, size, area_factor, cfg, fill):
    scale, translation = search_params_for_tracking(box, area_factor, (size, size), cfg.test.min_box_size)
    crop, scale, translation = crop_and_resize(image, scale, translation, (size, size), fill)
    return normalised(crop), scale, translation


def reference_loop(model: nn.Module, cfg: ExperimentConfig, frames: list[np.ndarray],
                   box_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Upstream's phase-1 / corrected phase-2 sequence written out by hand with the FULL chunked forward
    `model(z, [x]) / model(z, [reference, x])` on every frame: (boxes xywh, confidences, reference updates)."""
    m, test = cfg.model, cfg.test
    fill = image_mean(frames[0])
    state = box_ops.xywh_to_xyxy(box_xywh)
    scale, translation = siamfc_crop_params(state, test.template_area_factor, (m.template_size,) * 2)
    crop, scale, translation = crop_and_resize(frames[0], scale, translation, (m.template_size,) * 2, fill)
    mask = template_foreground_mask(box_ops.apply_affine(state, scale, translation), (m.template_size,) * 2,
                                    (m.template_feat_size,) * 2)
    z, mask = normalised(crop), torch.from_numpy(mask)[None]
    phase2 = m.loratv2.phase == 2
    if phase2:
        reference = crop_at(frames[0], state, m.loratv2.reference_size, m.loratv2.reference_area_factor, cfg, fill)[0]
    window = np.outer(np.hanning(m.search_feat_size), np.hanning(m.search_feat_size)).ravel()
    boxes, confidences, updates = [], [], 0
    for frame in frames[1:]:
        x, scale, translation = crop_at(frame, state, m.search_size, test.search_area_factor, cfg, fill)
        with torch.no_grad():
            out = model(z, [reference, x] if phase2 else [x], mask)
        scores = torch.sigmoid(out["score_map"][0]).flatten().double().numpy()
        k = np.argmax(scores * (1 - test.window_penalty) + window * test.window_penalty)
        in_crop = out["boxes"][0].reshape(-1, 4)[k].double().numpy() * m.search_size
        predicted = (in_crop.reshape(2, 2) - translation) / scale
        boxes.append(box_ops.xyxy_to_xywh(predicted.reshape(4)))
        confidences.append(scores[k])
        clipped = np.clip(predicted.reshape(4), 0, [frame.shape[1], frame.shape[0]] * 2)
        if clipped[0] < clipped[2] and clipped[1] < clipped[3]:
            state = clipped
        if phase2 and scores[k] > m.loratv2.update_threshold:
            reference = crop_at(frame, state, m.loratv2.reference_size, m.loratv2.reference_area_factor, cfg,
                                fill)[0]
            updates += 1
    return np.array(boxes), np.array(confidences), updates


def sharpened(cfg: ExperimentConfig) -> nn.Module:
    """The random-weight demo model with a 40x steeper classification layer, so confidences spread (about 0.49 to
    0.61 on the test sequence) and a threshold of 0.55 splits them."""
    model = build_model(cfg, training=False)
    with torch.no_grad():
        model.heads[-1].cls_mlp.layers[2].weight.mul_(40.)
    return model


SEQUENCE = generate_sequence(SyntheticSpec("A", 1, frames=(7, 7), image_size=(160, 120)), 0)


@pytest.mark.parametrize("cfg", [DEMO_P1, with_threshold(DEMO_P2, 0.55)], ids=["phase1", "phase2"])
def test_streaming_tracker_equals_the_full_forward_loop(cfg):
    frames, gt, _ = SEQUENCE
    model = sharpened(cfg)
    expected_boxes, expected_confidences, expected_updates = reference_loop(model, cfg, frames, gt[0])
    if cfg.model.loratv2.phase == 2:  # the threshold splits the frames clearly, both ways
        margins = np.abs(expected_confidences - 0.55)
        assert margins.min() > 1e-3 and 0 < expected_updates < len(frames) - 1, expected_confidences
    tracker = LoRATv2Tracker(model, cfg)
    updates = []
    update = model.update
    model.update = lambda *args: updates.append(args[0]) or update(*args)
    tracker.initialize(frames[0], gt[0])
    results = [tracker.track(frame) for frame in frames[1:]]
    np.testing.assert_allclose(np.array([b for b, _ in results]), expected_boxes, rtol=0, atol=1e-3)
    np.testing.assert_allclose([c for _, c in results], expected_confidences, rtol=0, atol=1e-5)
    assert len(updates) == (1 + expected_updates if cfg.model.loratv2.phase == 2 else 0)


def test_lockstep_equals_one_by_one_and_reuses_cache_slots():
    cfg = with_threshold(DEMO_P2, 0.55)
    model = sharpened(cfg)
    sequences = [generate_sequence(SyntheticSpec("A", 1, frames=(n, n), image_size=(160, 120), first_index=i), 0)
                 for i, n in enumerate((4, 2, 5))]
    single = LoRATv2Tracker(model, cfg)
    expected = []
    for frames, gt, _ in sequences:
        single.initialize(frames[0], gt[0])
        expected.append([single.track(frame) for frame in frames[1:]])
    assert single.cache.capacity == 1  # initialize() reuses the slot of the sequence before

    tracker = LoRATv2Tracker(model, cfg)
    waiting, active, results = list(range(len(sequences))), [], {i: [] for i in range(len(sequences))}
    while waiting or active:
        while waiting and len(active) < 2:
            i = waiting.pop(0)
            frames, gt, _ = sequences[i]
            active.append((i, tracker.start(frames[0], gt[0]), 1))
        answers = tracker.track_batch([s for _, s, _ in active], [sequences[i][0][f] for i, _, f in active])
        still = []
        for (i, state, f), answer in zip(active, answers):
            results[i].append(answer)
            if f + 1 == len(sequences[i][0]):
                tracker.release(state)
            else:
                still.append((i, state, f + 1))
        active = still
    assert tracker.cache.capacity == 2
    for i in range(len(sequences)):
        np.testing.assert_allclose([b for b, _ in results[i]], [b for b, _ in expected[i]], rtol=0, atol=1e-3)
        np.testing.assert_allclose([c for _, c in results[i]], [c for _, c in expected[i]], rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="released"):
        tracker.track_batch([state], [sequences[0][0][1]])


@pytest.mark.parametrize("engine, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_engines_cast_model_and_cache(engine, dtype):
    frames, gt, _ = SEQUENCE
    model = build_model(DEMO_P2, training=False)
    full = LoRATv2Tracker(model, DEMO_P2)
    half = LoRATv2Tracker(model, DEMO_P2, engine=engine)
    assert half.precision == engine and half.model is not model and full.model is model
    assert {p.dtype for p in half.model.parameters()} == {dtype} and next(model.parameters()).dtype == torch.float32
    full.initialize(frames[0], gt[0])
    half.initialize(frames[0], gt[0])
    (box_full, conf_full), (box_half, conf_half) = full.track(frames[1]), half.track(frames[1])
    np.testing.assert_allclose(box_half, box_full, rtol=0, atol=0.5)
    assert abs(conf_full - conf_half) < 0.01
    assert {t.dtype for t in half.cache.keys + half.cache.values} == {dtype}


@pytest.mark.parametrize("engine", ["int8", "onnxruntime", "tensorrt"])
def test_export_engines_are_refused(engine):
    with pytest.raises(EngineError, match="eager, fp16, bf16"):
        resolve_spec("loratv2", "demo_p1", checkpoint="random", engine=engine)
    with pytest.raises(EngineError, match="eager, fp16, bf16"):
        LoRATv2Tracker(StreamStandIn(P1, lambda call: np.zeros(4)), P1, engine=engine)


# ------------------------------------------------------------------ memory, weights, producer

@pytest.mark.parametrize("config, expected", [
    ("p1_base_224", 19_021_824), ("p2_base_378", 45_895_680),     # 2 * 12 layers * T (516 / 1245) * 768 * 2 bytes
    ("p1_large_224", 50_724_864), ("p2_large_378", 122_388_480),  # 2 * 24 * T * 1024 * 2
])
def test_kv_cache_bytes_per_sequence_match_the_published_layout(config, expected):
    assert kv_cache_bytes(load_experiment("loratv2", config), torch.float16) == expected


def test_kv_cache_bytes_match_the_allocated_cache():
    for cfg in (DEMO_P1, DEMO_P2):
        cache = build_model(cfg, training=False).new_kv_cache(3, dtype=torch.float32)
        allocated = sum(t.numel() * t.element_size() for t in cache.keys + cache.values)
        assert allocated == 3 * kv_cache_bytes(cfg, torch.float32)


def _write(path, key: str) -> str:
    from safetensors.torch import save_file

    save_file({key: torch.zeros(2, 2)}, str(path))
    return str(path)


def test_base_checkpoint_is_recorded_and_only_for_loratv2(tmp_path):
    checkpoint = _write(tmp_path / "phase2.safetensors", "blocks.0.attn.qkv.2.q.lora.A")
    base = _write(tmp_path / "phase1.safetensors", "blocks.0.attn.qkv.1.q.lora.A")
    spec = resolve_spec("loratv2", "demo_p2", checkpoint=checkpoint, base_checkpoint=base)
    record = producer_record(spec)
    assert record["base_checkpoint"] == str((tmp_path / "phase1.safetensors").resolve())
    assert record["base_checkpoint_sha256"] == hashlib.sha256((tmp_path / "phase1.safetensors").read_bytes()).hexdigest()
    assert record["checkpoint_sha256"] != record["base_checkpoint_sha256"]
    alone = producer_record(resolve_spec("loratv2", "demo_p2", checkpoint=checkpoint))
    assert alone["base_checkpoint"] is None
    assert [line.split(":")[0] for line in producer_differences(alone, record)] == ["base_checkpoint"]
    with pytest.raises(ValueError, match="drop --base_checkpoint"):
        resolve_spec("lorat", "demo", checkpoint="random", base_checkpoint=base)
    with pytest.raises(FileNotFoundError, match="base checkpoint"):
        resolve_spec("loratv2", "demo_p2", checkpoint=checkpoint, base_checkpoint=str(tmp_path / "missing.pth"))
    parser = argparse.ArgumentParser()
    parser.add_argument("--script")
    parser.add_argument("--config")
    add_tracker_arguments(parser)
    args = parser.parse_args(["--script", "loratv2", "--config", "demo_p2", "--checkpoint", checkpoint,
                              "--base_checkpoint", base])
    assert "phase-1" in parser.format_help()
    assert spec_from_args(args) == spec  # every option a tool shows reaches the spec
    # ... and a tracker started in another process (the VOT toolkit's command) gets the same spec back
    command = shlex.split(tracker_command(spec))
    assert command[command.index("--base_checkpoint") + 1] == spec.base_checkpoint
    assert spec_from_args(parser.parse_args(spec_arguments(spec))) == spec


def test_official_phase2_release_with_its_phase1_file(tmp_path, run_cli):
    """Upstream's two trainable-only files through the tracker spec (and the Python API), and this project's
    self-contained export of the same model through `Tracker.from_checkpoint` with no names."""
    from test_loratv2_model import meta_reg4_state, perturb_trainable_

    backbone = tmp_path / "dinov2_demo_reg4_pretrain.pth"
    torch.save(meta_reg4_state(), backbone)
    p1 = build_model(DEMO_P1, training=True, backbone_weights=backbone)
    perturb_trainable_(p1, seed=1)
    p1_file = str(save_official_checkpoint(p1, tmp_path / "p1.safetensors"))
    p2 = build_model(DEMO_P2, training=True, backbone_weights=backbone).eval()
    load_checkpoint(p2, p1_file, backbone_weights=backbone)
    perturb_trainable_(p2, seed=2)
    p2_file = str(save_official_checkpoint(p2, tmp_path / "p2.safetensors"))

    spec = resolve_spec("loratv2", "demo_p2", checkpoint=p2_file, backbone_weights=str(backbone),
                        base_checkpoint=p1_file)
    tracker = build_tracker(spec)
    g = torch.Generator().manual_seed(0)
    z, mask = torch.randn(1, 3, 56, 56, generator=g), (torch.rand(1, 4, 4, generator=g) > 0.5).long()
    xs = [torch.randn(1, 3, s, s, generator=g) for s in DEMO_P2.model.search_sizes]
    with torch.no_grad():
        torch.testing.assert_close(tracker.model(z, xs, mask), p2(z, xs, mask), rtol=1e-5, atol=1e-5)
    with pytest.raises(CheckpointError, match="base_checkpoint"):
        build_tracker(dataclasses.replace(spec, base_checkpoint=None))

    # the same two files through tracking/test.py: --base_checkpoint reaches the tracker and producer.json
    make_got10k_split(tmp_path / "got10k", "val", {"v1": 3})
    env = make_env(tmp_path, got10k_path=str(tmp_path / "got10k"))
    write_local_file(tmp_path / "local.py", env)
    command = ("test", "loratv2", "demo_p2", "--dataset_name", "got10k_val", "--env_file", str(tmp_path / "local.py"),
               "--checkpoint", p2_file, "--backbone_weights", str(backbone))
    alone = run_cli(*command)
    assert alone.returncode == 1 and "base_checkpoint" in alone.stderr
    cli = run_cli(*command, "--base_checkpoint", p1_file)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert f"after {p1_file}" in cli.stdout
    producer = read_producer(tmp_path / "out" / "test" / "tracking_results" / "loratv2" / "demo_p2")
    assert producer["base_checkpoint"] == p1_file

    frames, gt, _ = SEQUENCE
    api = Tracker.from_checkpoint(p2_file, script="loratv2", config="demo_p2", backbone_weights=str(backbone),
                                  base_checkpoint=p1_file)
    final = tmp_path / "save" / "checkpoints" / "train" / "loratv2" / "demo_p2" / "demo_p2_final.pth"
    final.parent.mkdir(parents=True)
    export = export_inference_checkpoint(tracker.model, DEMO_P2, final)
    assert resolve_spec("loratv2", "demo_p2", save_dir=tmp_path / "save").checkpoint == str(final.resolve())
    exported = Tracker.from_checkpoint(export)
    assert exported.spec.base_checkpoint is None and exported.spec.backbone_weights is None
    api.initialize(frames[0], gt[0])
    exported.initialize(frames[0], gt[0])
    for frame in frames[1:4]:
        (box_a, conf_a), (box_b, conf_b) = api.track(frame), exported.track(frame)
        np.testing.assert_allclose(box_b, box_a, rtol=0, atol=1e-3)
        assert conf_b == pytest.approx(conf_a, abs=1e-5)


# ------------------------------------------------------------------ through the evaluation runner

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("got10k")
    (root / "val").mkdir()
    names = []
    for i, n in enumerate((5, 3, 4)):
        [name] = write_got10k(root / "parts" / str(i), "val", SyntheticSpec(
            "A", 1, frames=(n, n), image_size=(96, 72), first_index=i, occluders=(0, 1)))
        (root / "parts" / str(i) / "val" / name).rename(root / "val" / f"seq_{i}")
        names.append(f"seq_{i}")
    (root / "val" / "list.txt").write_text("".join(f"{name}\n" for name in names))
    return root, get_dataset("got10k_val", make_env(root, got10k_path=str(root)))


def test_runner_end_to_end_sequential_and_lockstep(dataset, tmp_path):
    _, sequences = dataset
    spec = TrackerSpec("loratv2", "demo_p2", "random")
    report = run_dataset(spec, sequences, tracker_results_dir(tmp_path, "loratv2", "demo_p2"))
    assert not report.failures and len(report.outcomes) == 3
    assert read_producer(tracker_results_dir(tmp_path, "loratv2", "demo_p2"))["tracker"] == "loratv2"
    tracker = build_tracker(spec)
    lockstep_dir = tracker_results_dir(tmp_path, "loratv2", "demo_p2", 1)
    outcomes = track_lockstep(tracker, sequences, lockstep_dir, batch_sequences=2)
    assert not [o for o in outcomes if o.error] and tracker.cache.capacity == 2
    for seq in sequences:
        np.testing.assert_allclose(read_sequence_boxes(lockstep_dir, seq),
                                   read_sequence_boxes(tracker_results_dir(tmp_path, "loratv2", "demo_p2"), seq),
                                   rtol=0, atol=1e-3)
    rows = summary_rows(evaluate_trackers("got10k_val", sequences, [TrackerEntry("loratv2", "demo_p2")], tmp_path))
    assert 0. <= rows["loratv2/demo_p2"]["AO"] <= 100.
