"""ONNX export of the merged LoRAT model: one self-contained file, dynamic batch, float32 inputs and outputs.

```python
path = export_onnx(model, "lorat_b224.onnx")                  # fp32 graph
path = export_onnx(model, "lorat_b224_fp16.onnx", fp16=True)  # fp16 weights inside, float32 I/O
```

The graph's inputs are `z` (B,3,Hz,Wz) float32, `x` (B,3,Hx,Wx) float32 (ImageNet-normalised crops) and
`z_feat_mask` (B,hz,wz) int64; its outputs `score_map` (B,Hx',Wx') logits and `boxes` (B,Hx',Wx',4) normalised xyxy,
both float32, exactly as `model(z, x, z_feat_mask)` returns them. Export uses torch's own exporter
(`torch.onnx.export(dynamo=True)`, which needs the `onnxscript` package); ONNX Runtime runs the file.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib.models.engines import cast_parameters
from lib.models.lorat import LoRAT

INPUT_NAMES = ("z", "x", "z_feat_mask")
OUTPUT_NAMES = ("score_map", "boxes")
# Protobuf's limit for one file: larger models (ViT-g) would need external weight files, which we do not write.
_ONNX_FILE_LIMIT = 2 ** 31
_EXPORT_BATCH = 2  # a sample batch > 1, so the exporter cannot specialise the batch dimension to 1


class Float32IO(nn.Module):
    """Runs `model` with its weights in `dtype` while taking and returning float32 tensors (the deployed graph keeps
    one interface whatever precision it computes in)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(z.to(self.dtype), x.to(self.dtype), z_feat_mask)
        return tuple(out[name].float() for name in OUTPUT_NAMES)


def random_inputs(model: LoRAT, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Normal-distributed crops and a random 0/1 template mask of the sizes `model` takes (CPU, float32 / int64)."""
    g = torch.Generator().manual_seed(seed)
    patch = model.patch_embed.patch_size[0]
    f = model.template_feat_size
    t, s = f * patch, model.search_feat_size * patch
    return (torch.randn(batch, 3, t, t, generator=g), torch.randn(batch, 3, s, s, generator=g),
            torch.randint(0, 2, (batch, f, f), generator=g))


def export_onnx(model: LoRAT, path: str | Path, fp16: bool = False) -> Path:
    """Write `model` (merged, eval mode; left unchanged) as one ONNX file with a dynamic batch dimension."""
    if not isinstance(model, LoRAT):
        raise ValueError(f"ONNX export covers the one-forward LoRAT models, not {type(model).__name__}: LoRATv2 "
                         f"tracks step by step with a KV cache, which one exported graph does not hold; run it with "
                         f"--engine eager, fp16 or bf16")
    if any(".lora" in key for key in model.state_dict()):
        raise ValueError("export the merged model: build it with training=False (or merge_for_inference first)")
    parameter_bytes = sum(p.numel() for p in model.parameters()) * (2 if fp16 else 4)
    if parameter_bytes >= _ONNX_FILE_LIMIT:
        raise ValueError(f"{parameter_bytes / 2 ** 30:.1f} GiB of weights do not fit in one "
                         f"ONNX file (2 GiB protobuf limit); export with --fp16 if that fits, or a smaller variant")
    dtype = torch.float16 if fp16 else torch.float32
    wrapped = Float32IO(cast_parameters(model, dtype), dtype).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = {name: {0: batch} for name in INPUT_NAMES}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # The exporter notes that all three inputs share the one "batch" dimension, which is what we ask for.
        warnings.filterwarnings("ignore", message=".*axis name: batch will not be used")
        program = torch.onnx.export(wrapped, random_inputs(model, _EXPORT_BATCH), dynamo=True,
                                    input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                                    dynamic_shapes=dynamic, optimize=True, verbose=False)
    program.save(str(path), external_data=False)
    return path


def ort_session(source: str | Path | bytes, device: str | torch.device = "cpu", providers: list | None = None,
                threads: int | None = None):
    """An ONNX Runtime session on `device` (CPU, or CUDA with the onnxruntime-gpu build); `threads` defaults to
    torch's CPU thread count so that both runtimes are compared on the same cores."""
    import onnxruntime as ort

    device = torch.device(device)
    if providers is None:
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(f"onnxruntime {ort.__version__} has no CUDA execution provider (available: "
                                 f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu, or run "
                                 f"this engine with --device cpu")
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(source if isinstance(source, bytes) else str(source), options, providers=providers)


def export_to_bytes(model: LoRAT, fp16: bool = False) -> bytes:
    """`export_onnx` into memory (through a temporary file that is deleted again)."""
    with tempfile.TemporaryDirectory() as folder:
        return export_onnx(model, Path(folder) / "model.onnx", fp16).read_bytes()


def quantise_int8(graph: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantisation of an exported graph: every MatMul and Conv with weights gets int8
    weights (one scale per tensor) and activations quantised to uint8 on each call (MatMulInteger / ConvInteger)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(graph)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to run shape pre-processing first does not apply to this graph
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=False)
        finally:
            root.setLevel(level)
        return target.read_bytes()


def run_session(session, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> dict[str, np.ndarray]:
    """Feed torch inputs to an exported graph; numpy float32 outputs by name."""
    feeds = {"z": z.detach().float().cpu().numpy(), "x": x.detach().float().cpu().numpy(),
             "z_feat_mask": z_feat_mask.detach().long().cpu().numpy()}
    return dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), feeds)))


def max_output_difference(model: LoRAT, session, batch: int = 2,
                          seed: int = 0) -> dict[str, float]:
    """Largest |PyTorch fp32 - ONNX Runtime| per output on random inputs of `batch` samples."""
    inputs = random_inputs(model, batch, seed)
    device = next(model.parameters()).device
    with torch.inference_mode():
        expected = model(*(t.to(device) for t in inputs))
    got = run_session(session, *inputs)
    return {name: float(np.abs(expected[name].float().cpu().numpy() - got[name]).max()) for name in OUTPUT_NAMES}
