from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lib.train.loss import box_giou, box_iou, global_num_positives, lorat_loss


def _t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_iou_giou_hand_cases() -> None:
    a = _t([0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 4, 4], [0, 0, 1, 1], [0, 0, 2, 2])
    b = _t([0, 0, 2, 2], [2, 0, 3, 1], [1, 1, 3, 3], [1, 0, 2, 1], [1, 1, 3, 3])
    # identical: IoU 1, GIoU 1
    # disjoint [0,1]^2 vs [2,3]x[0,1]: IoU 0, hull 3x1=3, union 2 -> GIoU = -(3-2)/3
    # nested 2x2 inside 4x4: IoU 4/16, hull = outer box = union -> GIoU = IoU
    # touching edges: IoU 0, hull 2x1 = union -> GIoU 0
    # partial: inter 1, union 4+4-1=7, hull 3x3=9 -> IoU 1/7, GIoU 1/7 - 2/9
    expected_iou = torch.tensor([1.0, 0.0, 0.25, 0.0, 1 / 7], dtype=torch.float64)
    expected_giou = torch.tensor([1.0, -1 / 3, 0.25, 0.0, 1 / 7 - 2 / 9], dtype=torch.float64)
    torch.testing.assert_close(box_iou(a, b), expected_iou)
    torch.testing.assert_close(box_giou(a, b), expected_giou)
    torch.testing.assert_close(box_giou(b, a), expected_giou)  # symmetric


def test_degenerate_boxes_use_eps_clamp() -> None:
    point = _t([1, 1, 1, 1])
    # union and hull are 0 -> both clamped to 1e-6: IoU 0 / 1e-6 = 0, GIoU = 0 - (1e-6 - 1e-6)/1e-6 = 0
    assert box_iou(point, point).item() == 0.0
    assert box_giou(point, point).item() == 0.0
    assert torch.isfinite(box_giou(point, _t([2, 2, 2, 2]))).all()


def test_box_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        box_iou(torch.zeros(2, 4), torch.zeros(3, 4))


def _two_by_two_case() -> dict[str, torch.Tensor]:
    score_map = torch.tensor([[[0.0, 1.0], [-1.0, 2.0]]])
    gt = torch.tensor([[0.2, 0.2, 0.6, 0.6]])
    pred = torch.tensor([[[[0.0, 0.0, 0.1, 0.1], [0.2, 0.2, 0.6, 0.6]],
                          [[0.5, 0.5, 0.9, 0.9], [0.4, 0.4, 0.8, 0.8]]]])
    return {"score_map": score_map, "pred_boxes": pred, "gt_boxes": gt,
            "positive_batch_idx": torch.tensor([0, 0]), "positive_map_idx": torch.tensor([1, 3])}


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_lorat_loss_matches_hand_computation() -> None:
    case = _two_by_two_case()
    loss, stats = lorat_loss(**case, num_positives_global=2.0)
    # positives: cell 1 (row 0, col 1) predicts the GT exactly -> IoU 1, GIoU 1;
    # cell 3 (row 1, col 1) = [.4,.4,.8,.8]: inter .2*.2=.04, union .16+.16-.04=.28 -> IoU 1/7,
    # hull .6*.6=.36 -> GIoU = 1/7 - .08/.36.  Cells 0 and 2 are negatives (target 0).
    iou3 = 0.04 / 0.28
    giou3 = iou3 - (0.36 - 0.28) / 0.36
    # BCE with logits x and target t = softplus(x) - t*x
    bce = _softplus(0.0) + (_softplus(1.0) - 1.0 * 1.0) + _softplus(-1.0) + (_softplus(2.0) - iou3 * 2.0)
    expected_cls = bce / 2  # = (0.693147 + 0.313262 + 0.313262 + 1.841214) / 2 = 1.580443
    expected_giou = ((1 - 1.0) + (1 - giou3)) / 2  # = 1.0793651 / 2 = 0.5396825
    assert stats["loss_cls"] == pytest.approx(expected_cls, rel=1e-5)
    assert stats["loss_giou"] == pytest.approx(expected_giou, rel=1e-5)
    assert stats["iou"] == pytest.approx((1.0 + iou3) / 2, rel=1e-5)
    assert loss.item() == pytest.approx(expected_cls + expected_giou, rel=1e-5)
    assert loss.dtype == torch.float32


def test_num_positives_clamped_to_one() -> None:
    case = _two_by_two_case()
    loss_small, stats_small = lorat_loss(**case, num_positives_global=0.25)
    loss_one, _ = lorat_loss(**case, num_positives_global=1.0)
    loss_two, _ = lorat_loss(**case, num_positives_global=2.0)
    assert loss_small.item() == pytest.approx(loss_one.item(), rel=1e-6)
    assert loss_one.item() == pytest.approx(2 * loss_two.item(), rel=1e-6)


def test_no_positives_gives_pure_negative_bce_and_connected_graph() -> None:
    case = _two_by_two_case()
    case["positive_batch_idx"] = torch.zeros(0, dtype=torch.int64)
    case["positive_map_idx"] = torch.zeros(0, dtype=torch.int64)
    case["pred_boxes"].requires_grad_(True)
    loss, stats = lorat_loss(**case, num_positives_global=0.0)
    expected = _softplus(0.0) + _softplus(1.0) + _softplus(-1.0) + _softplus(2.0)  # all targets 0, N_pos 1
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["loss_giou"] == 0.0 and stats["iou"] == 0.0
    loss.backward()
    assert case["pred_boxes"].grad is not None
    assert torch.count_nonzero(case["pred_boxes"].grad) == 0


def test_gradients_reach_scores_and_boxes_but_not_through_iou_target() -> None:
    case = _two_by_two_case()
    score_map = case["score_map"].clone().requires_grad_(True)
    pred = case["pred_boxes"].clone().requires_grad_(True)
    loss, _ = lorat_loss(score_map, pred, case["gt_boxes"], case["positive_batch_idx"],
                         case["positive_map_idx"], num_positives_global=2.0)
    loss.backward()
    # d BCE / d logit = (sigmoid(x) - t) / N_pos, with t = detached IoU target
    iou3 = 0.04 / 0.28
    targets = torch.tensor([[0.0, 1.0], [0.0, iou3]])
    torch.testing.assert_close(score_map.grad[0], (torch.sigmoid(case["score_map"][0]) - targets) / 2)
    # box gradient must equal that of the GIoU term alone (the BCE target carries no gradient)
    ref = case["pred_boxes"].clone().requires_grad_(True)
    flat = ref.reshape(1, 4, 4)[0, [1, 3]]
    ((1 - box_giou(flat, case["gt_boxes"].expand(2, 4))).sum() / 2).backward()
    torch.testing.assert_close(pred.grad, ref.grad)
    assert torch.count_nonzero(pred.grad[0, 1, 1]) > 0  # imperfect positive box receives gradient
    assert torch.count_nonzero(pred.grad[0, 0, 0]) == 0  # negative cell's box receives none


def test_loss_is_float32_under_autocast() -> None:
    case = _two_by_two_case()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss, stats = lorat_loss(case["score_map"].bfloat16(), case["pred_boxes"].bfloat16(), case["gt_boxes"],
                                 case["positive_batch_idx"], case["positive_map_idx"], num_positives_global=2.0)
    assert loss.dtype == torch.float32
    reference, _ = lorat_loss(case["score_map"].bfloat16().float(), case["pred_boxes"].bfloat16().float(),
                              case["gt_boxes"], case["positive_batch_idx"], case["positive_map_idx"], 2.0)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)


def test_bad_shapes_raise() -> None:
    case = _two_by_two_case()
    case["pred_boxes"] = torch.zeros(1, 2, 2, 3)
    with pytest.raises(ValueError, match="pred_boxes"):
        lorat_loss(**case, num_positives_global=1.0)


def test_global_num_positives_without_distributed_is_identity() -> None:
    assert global_num_positives(torch.tensor([7.0])) == 7.0


def _mean_worker(rank: int, init_file: str, values: list[float], out: "mp.Queue") -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=len(values))
    try:
        out.put((rank, global_num_positives(torch.tensor([values[rank]]))))
    finally:
        dist.destroy_process_group()


def test_global_num_positives_is_mean_over_ranks(tmp_path) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    values = [3.0, 6.0]
    procs = [ctx.Process(target=_mean_worker, args=(r, str(tmp_path / "init"), values, queue)) for r in range(2)]
    for proc in procs:
        proc.start()
    results = dict(queue.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    assert results == {0: 4.5, 1: 4.5}
