"""Export a LoRAT model to one self-contained ONNX file (dynamic batch) and check it with ONNX Runtime.

    python tracking/export_onnx.py --script lorat --config base_224 --checkpoint LoRAT-base_224.bin --out lorat.onnx
    python tracking/export_onnx.py --script lorat --config demo --checkpoint random --out demo.onnx [--fp16]

Weights resolve as in tracking/test.py: a checkpoint holding only LoRA/head weights (official releases) is loaded
on the config's pretrained backbone file (or --backbone_weights). The graph takes `z` (B,3,Hz,Wz) and `x`
(B,3,Hx,Wx) float32 crops, normalised with the backbone's statistics (ImageNet's; OpenAI CLIP's for CLIP and
EVA-02), and `z_feat_mask` (B,hz,wz) int64, and returns `score_map` and
`boxes` in float32 (lib/models/onnx_export.py). `--fp16` stores fp16 weights and computes in fp16 inside the graph
(for GPUs; ONNX Runtime's CPU kernels are slow in fp16). The export is checked by running it in ONNX Runtime on
random inputs next to the fp32 PyTorch model; the largest output difference is printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.config import load_experiment
from lib.models.onnx_export import export_onnx, max_output_difference, ort_session
from lib.test.tracker import RANDOM_WEIGHTS, TRACKER_BUILDERS, resolve_spec, tracker_kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--script", default="lorat", help=f"tracker script: {', '.join(TRACKER_BUILDERS)}")
    parser.add_argument("--config", required=True, help="config name, e.g. base_224")
    parser.add_argument("--checkpoint", required=True, help=f"weights file, or {RANDOM_WEIGHTS!r} for a quick try")
    parser.add_argument("--backbone_weights", default=None, help="backbone (e.g. DINOv2) weights file")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--fp16", action="store_true", help="fp16 weights and compute inside the graph")
    args = parser.parse_args(argv)
    try:
        if not tracker_kind(args.script).learned:
            raise ValueError(f"{args.script} has no model to export")
        spec = resolve_spec(args.script, args.config, args.checkpoint, args.backbone_weights)
        from lib.test.tracker.lorat import build_inference_model

        model = build_inference_model(load_experiment(args.script, args.config), spec)
        path = export_onnx(model, args.out, fp16=args.fp16)
    except KeyError as exc:
        raise SystemExit(f"error: {exc.args[0]}") from None
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    size = path.stat().st_size / 2 ** 20
    print(f"wrote {path} ({size:.1f} MiB, {'fp16' if args.fp16 else 'fp32'} weights, dynamic batch)")
    differences = max_output_difference(model, ort_session(path), batch=2)
    print("largest |PyTorch fp32 - ONNX Runtime| on random inputs (batch 2): "
          + ", ".join(f"{name} {value:.3e}" for name, value in differences.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
