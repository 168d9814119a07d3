"""LoRAT training loss: IoU-aware BCE on the score map + GIoU on the boxes of positive cells.

Follows upstream trackit/LoRAT (https://github.com/LitingLin/LoRAT, ``trackit/criteria/methods/box_with_score_map``):
both terms are summed and divided by the number of positive cells averaged over ranks (clamped below by 1), and
the whole loss is computed in float32 even inside an fp16 autocast region.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

BOX_EPS = 1e-6  # upstream clamps union and enclosing area below by 1e-6 (mmdet bbox_overlaps)


def _iou_and_enclosure(boxes1: torch.Tensor, boxes2: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Aligned IoU, clamped union and clamped enclosing area of two (..., 4) xyxy box tensors."""
    if boxes1.shape != boxes2.shape or boxes1.shape[-1] != 4:
        raise ValueError(f"expected two (..., 4) xyxy box tensors of equal shape, got "
                         f"{tuple(boxes1.shape)} and {tuple(boxes2.shape)}")
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    inter_wh = (torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
                - torch.maximum(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    overlap = inter_wh[..., 0] * inter_wh[..., 1]
    union = (area1 + area2 - overlap).clamp(min=eps)
    enclose_wh = (torch.maximum(boxes1[..., 2:], boxes2[..., 2:])
                  - torch.minimum(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    enclose = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return overlap / union, union, enclose


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = BOX_EPS) -> torch.Tensor:
    """Element-wise IoU of aligned xyxy boxes (union clamped below by ``eps``), shape ``boxes1.shape[:-1]``."""
    return _iou_and_enclosure(boxes1, boxes2, eps)[0]


def box_giou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = BOX_EPS) -> torch.Tensor:
    """Element-wise generalised IoU of aligned xyxy boxes (union and enclosing area clamped by ``eps``)."""
    iou, union, enclose = _iou_and_enclosure(boxes1, boxes2, eps)
    return iou - (enclose - union) / enclose


def global_num_positives(local: torch.Tensor) -> float:
    """Mean of the per-rank positive counts over all ranks (identity when not running distributed).

    Every rank must call this (it is a collective when torch.distributed is initialised).
    """
    value = local.detach().to(torch.float32).reshape(-1).sum()
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / dist.get_world_size()
    return float(value.item())


def _check_loss_inputs(score_map: torch.Tensor, pred_boxes: torch.Tensor, gt_boxes: torch.Tensor,
                       positive_batch_idx: torch.Tensor, positive_map_idx: torch.Tensor) -> None:
    if score_map.dim() != 3:
        raise ValueError(f"score_map must be (B, H, W) logits, got shape {tuple(score_map.shape)}")
    batch, height, width = score_map.shape
    if tuple(pred_boxes.shape) != (batch, height, width, 4):
        raise ValueError(f"pred_boxes must be (B, H, W, 4) = {(batch, height, width, 4)}, "
                         f"got {tuple(pred_boxes.shape)}")
    if tuple(gt_boxes.shape) != (batch, 4):
        raise ValueError(f"gt_boxes must be (B, 4) = {(batch, 4)}, got {tuple(gt_boxes.shape)}")
    if positive_batch_idx.dim() != 1 or positive_batch_idx.shape != positive_map_idx.shape:
        raise ValueError(f"positive_batch_idx and positive_map_idx must be 1-D of equal length, got "
                         f"{tuple(positive_batch_idx.shape)} and {tuple(positive_map_idx.shape)}")


def lorat_loss(score_map: torch.Tensor, pred_boxes: torch.Tensor, gt_boxes: torch.Tensor,
               positive_batch_idx: torch.Tensor, positive_map_idx: torch.Tensor,
               num_positives_global: float, iou_aware: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """LoRAT loss ``L_cls + L_reg`` and its logging stats.

    score_map: (B, H, W) logits; pred_boxes: (B, H, W, 4) normalised xyxy; gt_boxes: (B, 4) normalised xyxy;
    positive_batch_idx / positive_map_idx: int64 (P,) sample index and row-major flat cell index of each
    positive cell; num_positives_global: positives per rank averaged over ranks (``global_num_positives``).
    The BCE target is the IoU between the GT and the (detached) prediction at positive cells (`iou_aware=False`:
    1 there, as upstream's conv-head ablations), 0 elsewhere.
    Stats: ``loss_cls``, ``loss_giou``, ``iou`` (mean IoU of the positive cells, 0 when there are none).
    """
    _check_loss_inputs(score_map, pred_boxes, gt_boxes, positive_batch_idx, positive_map_idx)
    batch, height, width = score_map.shape
    num_pos = max(1.0, float(num_positives_global))
    with torch.autocast(device_type=score_map.device.type, enabled=False):
        logits = score_map.float().reshape(batch, height * width)
        boxes = pred_boxes.float().reshape(batch, height * width, 4)
        positive_pred = boxes[positive_batch_idx, positive_map_idx]
        positive_gt = gt_boxes.float()[positive_batch_idx]

        with torch.no_grad():
            positive_iou = box_iou(positive_gt, positive_pred)
            target = torch.zeros_like(logits)
            target[positive_batch_idx, positive_map_idx] = positive_iou if iou_aware else 1.0

        loss_cls = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / num_pos
        if positive_batch_idx.numel() > 0:
            loss_giou = (1.0 - box_giou(positive_pred, positive_gt)).sum() / num_pos
            mean_iou = float(positive_iou.mean().item())
        else:
            loss_giou = boxes.sum() * 0.0  # keeps the box branch in the graph (DDP static graph)
            mean_iou = 0.0
        loss = loss_cls + loss_giou
    stats = {"loss_cls": float(loss_cls.detach().item()), "loss_giou": float(loss_giou.detach().item()),
             "iou": mean_iou}
    return loss, stats
