"""LoRAT tracker: geometry with a stand-in model whose output is known, post-processing, weights selection.

Frames are coordinate ramps (R = x, G = y at pixel centres), so a stand-in model can read the exact affine map
of the search crop it receives from the crop itself, independently of the tracker, and answer with the true
target box in crop coordinates.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from lib.config import load_experiment
from lib.models import build_model, export_inference_checkpoint
from lib.test.tracker import TrackerSpec, build_tracker, resolve_spec
from lib.test.tracker.lorat import LoRATTracker, checkpoint_needs_backbone, default_checkpoint, hann_window_2d
from lib.utils.boxes import iou, xywh_to_xyxy
from lib.utils.paths import RunPaths

CFG = load_experiment("lorat", "small_224")
SEARCH = 224
FEAT = 16
FRAME_W, FRAME_H = 256, 240
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
HIGH, LOW = 8.0, -8.0  # logits of the chosen cell and of every other cell


def ramp_frame(blue: int = 0) -> np.ndarray:
    """R = column index, G = row index, B constant: bilinear resampling reproduces the coordinates exactly."""
    ys, xs = np.mgrid[0:FRAME_H, 0:FRAME_W]
    return np.stack([xs, ys, np.full_like(xs, blue)], axis=-1).astype(np.uint8)


def pixels(x: torch.Tensor) -> np.ndarray:
    """Undo the ImageNet normalisation: (3, H, W) tensor -> HxWx3 0..255 float64."""
    return (x.detach().double().numpy().transpose(1, 2, 0) * STD + MEAN) * 255.


def recover_map(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop affine map ``crop = s * image + t`` read from the ramp values of the central crop pixels.

    Crop pixel ``j`` (centre ``j + 0.5``) holds the image coordinate of its centre minus 0.5.
    """
    mid = crop.shape[0] // 2
    js = np.arange(mid - 16, mid + 16)
    scale, translation = np.empty(2), np.empty(2)
    for axis, values in enumerate((crop[mid, js, 0], crop[js, mid, 1])):
        slope, offset = np.polyfit(js, values, 1)  # value = slope * j + offset
        scale[axis] = 1. / slope
        translation[axis] = 0.5 - (offset + 0.5) / slope
    return scale, translation


class StandIn(nn.Module):
    """Records its inputs; ``respond(call_index, crop_pixels)`` gives the (H, W) logits and (H, W, 4) boxes."""

    def __init__(self, respond: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
        super().__init__()
        self.respond = respond
        self.calls: list[dict[str, torch.Tensor]] = []

    def forward(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls.append({"z": z.clone(), "x": x.clone(), "mask": z_feat_mask.clone()})
        score, boxes = self.respond(len(self.calls) - 1, pixels(x[0]))
        return {"score_map": torch.tensor(score, dtype=torch.float32)[None],
                "boxes": torch.tensor(boxes, dtype=torch.float32)[None]}


def oracle(truth: Callable[[int], np.ndarray]) -> StandIn:
    """Answers the true image box ``truth(call)`` (xyxy) in crop coordinates at the cell holding its centre; every
    other cell holds a decoy box 40 px away, so reading the wrong cell is visible."""
    def respond(call: int, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale, translation = recover_map(crop)
        box = (np.asarray(truth(call), dtype=np.float64).reshape(2, 2) * scale + translation).reshape(4) / SEARCH
        centre = np.nan_to_num((box[:2] + box[2:]) / 2, nan=0.5)
        col, row = np.clip((centre * FEAT).astype(int), 0, FEAT - 1)
        score = np.full((FEAT, FEAT), LOW)
        score[row, col] = HIGH
        boxes = np.tile(box + 40. / SEARCH, (FEAT, FEAT, 1))
        boxes[row, col] = box
        return score, boxes
    return StandIn(respond)


def fixed(score: np.ndarray, boxes: np.ndarray) -> StandIn:
    return StandIn(lambda call, crop: (score, boxes))


def sigmoid(v: float) -> float:
    return 1. / (1. + np.exp(-v))


def test_hann_window_is_symmetric_outer_product_row_major():
    n = np.arange(16)
    hann16 = 0.5 - 0.5 * np.cos(2 * np.pi * n / 15)
    np.testing.assert_allclose(hann_window_2d(16, 16).numpy(), np.outer(hann16, hann16).ravel(), atol=1e-7)
    assert hann16[0] == 0 and abs(hann16[7] - 0.98907380) < 1e-7  # symmetric (periodic=False) values
    h3, h5 = np.array([0., 1., 0.]), np.array([0., .5, 1., .5, 0.])
    np.testing.assert_allclose(hann_window_2d(3, 5).numpy(), np.outer(h3, h5).ravel(), atol=1e-7)


def test_static_target_is_tracked_exactly():
    truth = np.array([90., 95., 120., 115.])
    model = oracle(lambda call: truth)
    tracker = LoRATTracker(model, CFG)
    tracker.initialize(ramp_frame(), np.array([90., 95., 30., 20.]))
    for _ in range(20):
        box, confidence = tracker.track(ramp_frame())
        assert box.shape == (4,) and box.dtype == np.float64
        assert iou(xywh_to_xyxy(box), truth) > 0.9999
        assert confidence == pytest.approx(sigmoid(HIGH), abs=1e-6)  # the unpenalised score


def test_moving_target_is_followed_beyond_the_first_search_region():
    def truth(call: int) -> np.ndarray:  # 4 px/frame right, 2 px/frame down, growing slowly
        return np.array([40. + 4 * (call + 1), 60. + 2 * (call + 1), 60. + 4.5 * (call + 1), 76. + 2.4 * (call + 1)])

    model = oracle(truth)
    tracker = LoRATTracker(model, CFG)
    tracker.initialize(ramp_frame(), np.array([40., 60., 20., 16.]))
    for frame in range(30):
        box, _ = tracker.track(ramp_frame())
        assert iou(xywh_to_xyxy(box), truth(frame)) > 0.9999
    # 120 px travelled: far outside the first search region (about 4 x 18 = 72 px wide).
    assert truth(29)[0] - 40. > 72


def test_window_penalty_changes_the_argmax_and_confidence_is_unpenalised():
    # State box 20x20 centred at (100, 100): search side 4 * 20 = 80 px, s = 224/80 = 2.8, crop x0 = 60 in the image.
    score = np.full((FEAT, FEAT), -30.)
    score[0, 0] = np.log(0.9 / 0.1)  # p = 0.9 at a corner cell (window 0): q = 0.55 * 0.9 = 0.495
    score[7, 7] = np.log(0.6 / 0.4)  # p = 0.6 near the centre (window 0.978): q = 0.33 + 0.45 * 0.978 = 0.770
    boxes = np.zeros((FEAT, FEAT, 4))
    boxes[:] = [0.5, 0.5, 0.6, 0.6]
    boxes[0, 0] = [0., 0., 0.25, 0.25]  # crop (0, 0, 56, 56) -> image (60, 60, 80, 80)
    boxes[7, 7] = [0.375, 0.375, 0.625, 0.625]  # crop (84, 84, 140, 140) -> image (90, 90, 110, 110)
    for penalty, expected_box, expected_confidence in ((0.45, [90., 90., 20., 20.], 0.6),
                                                       (0.0, [60., 60., 20., 20.], 0.9)):
        cfg = dataclasses.replace(CFG, test=dataclasses.replace(CFG.test, window_penalty=penalty))
        tracker = LoRATTracker(fixed(score, boxes), cfg)
        tracker.initialize(ramp_frame(), np.array([90., 90., 20., 20.]))
        box, confidence = tracker.track(ramp_frame())
        np.testing.assert_allclose(box, expected_box, atol=1e-4)
        assert confidence == pytest.approx(expected_confidence, abs=1e-6)


@pytest.mark.parametrize("bad_box", [
    [np.nan] * 4,                    # NaN prediction
    [115., 105., 115., 125.],        # zero width
    [300., 100., 320., 120.],        # entirely right of the 256 px wide frame: clipped to zero width
])
def test_invalid_prediction_keeps_the_previous_state(bad_box):
    answers = [np.array([110., 100., 130., 120.]), np.array(bad_box), np.array([0., 0., 1., 1.])]
    model = oracle(lambda call: answers[call])
    tracker = LoRATTracker(model, CFG)
    tracker.initialize(ramp_frame(), np.array([90., 90., 20., 20.]))
    tracker.track(ramp_frame())
    reported, _ = tracker.track(ramp_frame())
    assert not (np.all(np.isfinite(reported)) and reported[2] > 0 and reported[3] > 0)  # reported as predicted
    tracker.track(ramp_frame())
    # Third search crop still centred on the last valid box (120, 110), with its scale 224 / 80.
    scale, translation = recover_map(pixels(model.calls[2]["x"][0]))
    np.testing.assert_allclose(scale, [2.8, 2.8], rtol=1e-4)
    np.testing.assert_allclose(scale * [120., 110.] + translation, [112., 112.], atol=1e-3)


def test_box_is_clipped_to_the_image_and_clipped_box_becomes_the_state():
    answers = [np.array([-10., 50., 30., 80.]), np.array([230., 220., 270., 250.]), np.array([0., 0., 1., 1.])]
    model = oracle(lambda call: answers[call])
    tracker = LoRATTracker(model, CFG)
    tracker.initialize(ramp_frame(), np.array([90., 90., 20., 20.]))
    box, _ = tracker.track(ramp_frame())
    np.testing.assert_allclose(box, [0., 50., 30., 30.], atol=1e-3)
    box, _ = tracker.track(ramp_frame())
    np.testing.assert_allclose(box, [230., 220., 26., 20.], atol=1e-3)
    # The next crop is centred on the clipped box (243, 230), not on the raw prediction's centre (250, 235); the
    # pixel alignment at the frame border moves the applied map by a fraction of an image pixel.
    tracker.track(ramp_frame())
    scale, translation = recover_map(pixels(model.calls[2]["x"][0]))
    np.testing.assert_allclose((112. - translation) / scale, [243., 230.], atol=0.5)


def test_small_state_box_is_enlarged_to_10_px_for_the_search_crop():
    # Box 4x6 at centre (100, 100). Enlarged to 10x10: side 4 * 10 = 40, s = 224 / 40 = 5.6, crop from (80, 80).
    # Without the minimum the side would be sqrt(19 * 21) ~ 20 px and s ~ 11.2.
    model = oracle(lambda call: np.array([98., 97., 102., 103.]))
    tracker = LoRATTracker(model, CFG)
    tracker.initialize(ramp_frame(), np.array([98., 97., 4., 6.]))
    tracker.track(ramp_frame())
    scale, translation = recover_map(pixels(model.calls[0]["x"][0]))
    np.testing.assert_allclose(scale, [5.6, 5.6], rtol=1e-4)
    np.testing.assert_allclose(translation, [-448., -448.], atol=0.05)


@pytest.mark.parametrize("box_xywh, rows, cols, scale, translation", [
    # Box (98, 97, 102, 103): template side sqrt(9 * 11) = 9.95 -> input pixels 95..105, s' = 112 / 10 = 11.2,
    # t' = -1064. Box in the crop (33.6, 22.4, 78.4, 89.6) / stride 14 = (2.4, 1.6, 5.6, 6.4) -> cols 2..5, rows 1..6.
    ([98., 97., 4., 6.], (1, 7), (2, 6), (11.2, 11.2), (-1064., -1064.)),
    # Box (90, 100, 93, 104): side sqrt(6.5 * 7.5) = 6.98 around (91.5, 102) -> input x 88..95, y 98..106, so the
    # applied map is anisotropic: s' = (16, 14), t' = (-1408, -1372). Crop box (32, 28, 80, 84) / 14 =
    # (2.29, 2, 5.71, 6) -> cols 2..5, rows 2..5 (the requested map, s = 16.04, would give rows 1..6).
    ([90., 100., 3., 4.], (2, 6), (2, 6), (16., 14.), (-1408., -1372.)),
])
def test_template_mask_matches_hand_worked_case(box_xywh, rows, cols, scale, translation):
    box = np.array(box_xywh)
    model = oracle(lambda call: xywh_to_xyxy(box))
    tracker = LoRATTracker(model, CFG)
    tracker.initialize(ramp_frame(), box)
    tracker.track(ramp_frame())
    tracker.track(ramp_frame())
    expected = np.zeros((1, 8, 8), dtype=np.int64)
    expected[0, rows[0]:rows[1], cols[0]:cols[1]] = 1
    for call in model.calls:  # the cached template and mask are passed unchanged on every frame
        assert call["mask"].dtype == torch.int64
        np.testing.assert_array_equal(call["mask"].numpy(), expected)
        torch.testing.assert_close(call["z"], model.calls[0]["z"], rtol=0, atol=0)
    recovered_scale, recovered_translation = recover_map(pixels(model.calls[0]["z"][0]))
    np.testing.assert_allclose(recovered_scale, scale, rtol=1e-4)
    np.testing.assert_allclose(recovered_translation, translation, atol=0.05)


def test_padding_is_the_first_frame_mean_at_the_border():
    # Target centred at (12, 110), 20x20: the search crop covers image x in [-28, 52], so crop columns < 78.4 lie
    # left of the frame; the template crop (side 40) covers [-8, 32], i.e. template columns < 22.4.
    first, later = ramp_frame(blue=0), ramp_frame(blue=200)
    first_mean = np.array([127.5, 119.5, 0.])  # later frames have mean blue 200: must not be used
    model = oracle(lambda call: np.array([2., 100., 22., 120.]))
    tracker = LoRATTracker(model, CFG)
    tracker.initialize(first, np.array([2., 100., 20., 20.]))
    tracker.track(later)
    search = pixels(model.calls[0]["x"][0])
    np.testing.assert_allclose(search[:, :78], np.broadcast_to(first_mean, (SEARCH, 78, 3)), atol=2e-3)
    np.testing.assert_allclose(search[:, 79:, 2], 200., atol=2e-3)  # inside the frame: the current frame
    template = pixels(model.calls[0]["z"][0])
    np.testing.assert_allclose(template[:, :22], np.broadcast_to(first_mean, (112, 22, 3)), atol=2e-3)
    np.testing.assert_allclose(template[:, 23:, 2], 0., atol=2e-3)


def test_protocol_errors():
    tracker = LoRATTracker(oracle(lambda call: np.zeros(4)), CFG)
    with pytest.raises(RuntimeError, match="before initialize"):
        tracker.track(ramp_frame())
    with pytest.raises(ValueError, match="positive width and height"):
        tracker.initialize(ramp_frame(), np.array([10., 10., 0., 5.]))
    bad_amp = dataclasses.replace(CFG, test=dataclasses.replace(CFG.test, amp="fp8"))
    with pytest.raises(ValueError, match="test.amp"):
        LoRATTracker(oracle(lambda call: np.zeros(4)), bad_amp)


def test_smoke_small_224_random_weights():
    tracker = build_tracker(resolve_spec("lorat", "small_224", checkpoint="random"))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
    tracker.initialize(frame, np.array([100., 80., 40., 30.]))
    for _ in range(3):
        box, confidence = tracker.track(frame)
        assert box.shape == (4,) and np.all(np.isfinite(box))
        assert box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= FRAME_W and box[1] + box[3] <= FRAME_H
        assert 0. <= confidence <= 1.


def test_default_checkpoint_is_the_newest_file_or_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--checkpoint") as error:
        default_checkpoint(RunPaths.for_run(tmp_path, "lorat", "base_224"), "base_224")
    assert str(tmp_path / "checkpoints" / "train" / "lorat" / "base_224") in str(error.value)
    folder = tmp_path / "checkpoints" / "train" / "lorat" / "base_224"
    folder.mkdir(parents=True)
    for name, mtime in (("LoRAT_ep0010.pth", 100), ("final_export.pth", 300), ("LoRAT_ep0020.pth", 200),
                        ("notes.txt", 400)):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (mtime, mtime))
    paths = RunPaths.for_run(tmp_path, "lorat", "base_224")
    assert default_checkpoint(paths, "base_224") == folder / "final_export.pth"


def _perturbed(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        model.head.cls_mlp.layers[2].bias.fill_(0.25)
        model.token_type_embed.add_(0.5)
    return model


def test_build_tracker_loads_a_full_export_without_backbone_weights(tmp_path):
    source = _perturbed(build_model(CFG, training=False))
    path = export_inference_checkpoint(source, CFG, tmp_path / "export.pth")
    assert not checkpoint_needs_backbone(path)
    tracker = build_tracker(resolve_spec("lorat", "small_224", checkpoint=str(path)))
    torch.testing.assert_close(tracker.model.state_dict(), source.state_dict(), rtol=0, atol=0)


def test_lora_only_checkpoint_needs_backbone_weights(tmp_path):
    # An official release holds only adapters (official names), the token-type embedding and the head.
    from safetensors.torch import save_file

    state = {"blocks.0.attn.qkv.q.lora.A": torch.zeros(64, 384), "blocks.0.mlp.fc1.lora.B": torch.zeros(1536, 64),
             "token_type_embed": torch.zeros(3, 384), "head.cls_mlp.layers.0.weight": torch.zeros(384, 384),
             "lora_alpha": torch.tensor(64)}
    path = tmp_path / "LoRAT-small_224.bin"
    save_file(state, str(path))
    assert checkpoint_needs_backbone(path)
    with pytest.raises(FileNotFoundError, match="dinov2_vits14_pretrain.pth"):
        build_tracker(resolve_spec("lorat", "small_224", checkpoint=str(path),
                                   backbone_weights=str(tmp_path / "dinov2_vits14_pretrain.pth")))


@pytest.mark.parametrize("outside", [[FRAME_W + 5., 10., 20., 20.], [-30., -40., 30., 40.], [10., FRAME_H, 5., 5.]])
def test_initial_box_outside_the_image_is_refused(outside):
    # Upstream's state update only accepts boxes with positive-area overlap with the frame; an initial box without
    # any would be tracked as a crop of pure padding (issue case: W,H,0,0 written for every frame).
    tracker = LoRATTracker(oracle(lambda call: np.zeros(4)), CFG)
    with pytest.raises(ValueError, match="must overlap the image"):
        tracker.initialize(ramp_frame(), np.array(outside))
    tracker.initialize(ramp_frame(), np.array([FRAME_W - 1., FRAME_H - 1., 20., 20.]))  # a 1 x 1 px overlap is fine


DEMO = load_experiment("lorat", "demo")


def test_default_checkpoint_comes_from_the_callers_save_dir(tmp_path):
    save_dir = tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError, match=str(save_dir / "checkpoints" / "train" / "lorat" / "demo")):
        resolve_spec("lorat", "demo", save_dir=save_dir)
    with pytest.raises(ValueError, match="--checkpoint"):
        resolve_spec("lorat", "demo")  # no save_dir given: nothing is looked up anywhere else
    source = _perturbed(build_model(DEMO, training=False))
    final = save_dir / "checkpoints" / "train" / "lorat" / "demo" / "demo_final.pth"
    final.parent.mkdir(parents=True)
    export_inference_checkpoint(source, DEMO, final)
    spec = resolve_spec("lorat", "demo", save_dir=save_dir, device="cpu")
    assert (spec.checkpoint, spec.backbone_weights) == (str(final.resolve()), None)
    torch.testing.assert_close(build_tracker(spec).model.state_dict(), source.state_dict(), rtol=0, atol=0)


def test_build_tracker_uses_only_resolved_weights():
    with pytest.raises(ValueError, match="resolve_spec"):
        build_tracker(TrackerSpec("lorat", "demo"))
