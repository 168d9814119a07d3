"""Inference engines: one call for every way of running the merged model.

```python
engine = build_engine(model, "int8", device="cpu")  # see ENGINES
out = engine(z, x, z_feat_mask)  # {'score_map': (B,H,W), 'boxes': (B,H,W,4)}, float32, on `device`
```

`model` is the merged inference model (`build_model(cfg, training=False)` plus `load_checkpoint`); engines that
convert weights work on a copy, so `model` is left as it was. Every engine runs under `torch.inference_mode`.
Which engine is fastest depends on the machine: docs/benchmarks.md has the measured latencies and the largest
output deviations from fp32 eager.
"""
from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

import torch
from timm.layers import Mlp
from torch import nn

from lib.utils.precision import PRECISIONS, autocast

Outputs = dict[str, torch.Tensor]


class EngineError(ValueError):
    """The engine cannot run on this device or without a package; the message says what to do instead."""


class Engine(nn.Module):
    """Base of the engines: `engine(z, x, z_feat_mask)` returns the model's output dict in float32 on `device`."""

    name: str = ""
    precision: str = ""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device


class TorchEngine(Engine):
    """A PyTorch module called under inference mode, optionally inside autocast, inputs cast to its weight dtype."""

    def __init__(self, module: Callable[..., Outputs], device: torch.device, name: str, precision: str,
                 input_dtype: torch.dtype = torch.float32, amp: str = "fp32") -> None:
        super().__init__(device)
        self.module = module
        self.name, self.precision = name, precision
        self.input_dtype = input_dtype
        self.amp = amp

    def forward(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> Outputs:
        with torch.inference_mode(), autocast(self.device.type, self.amp):
            out = self.module(z.to(self.input_dtype), x.to(self.input_dtype), z_feat_mask)
        return {key: value.float() for key, value in out.items()}


class OnnxRuntimeEngine(Engine):
    """The exported ONNX graph (lib.models.onnx_export) in an ONNX Runtime session; outputs come back as torch
    tensors on `device`."""

    def __init__(self, session, device: torch.device, name: str, precision: str) -> None:
        super().__init__(device)
        self.session = session
        self.name, self.precision = name, precision

    def forward(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> Outputs:
        from lib.models.onnx_export import run_session

        return {k: torch.from_numpy(v).to(self.device) for k, v in run_session(self.session, z, x, z_feat_mask).items()}


def _require_package(module: str, engine: str, install: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise EngineError(f"engine {engine!r} needs the {module} package: pip install {install}") from None


def _cpu_supports(dtype: torch.dtype) -> bool:
    """This CPU runs `dtype` faster than fp32: bf16 with oneDNN's AVX512-BF16 / AMX-BF16 kernels; fp16 only with
    AMX-FP16 (on an AVX512-FP16 CPU without AMX-FP16, B-224 in fp16 measured no faster than fp32:
    docs/benchmarks.md)."""
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return bool(getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)())


def cast_parameters(model: nn.Module, dtype: torch.dtype, device: torch.device | str = "cpu") -> nn.Module:
    """A copy of `model` on `device` with its parameters in `dtype`; buffers keep their dtype (the head's reference
    points, (j + 0.5) / W, are not all exact in 16 bits and would shift every box)."""
    converted = copy.deepcopy(model).to(device).eval()
    for parameter in converted.parameters():
        parameter.data = parameter.data.to(dtype)
    return converted


class OneDnnLinear(nn.Module):
    """A bf16 linear layer whose weight oneDNN reorders once, at build, into the blocked layout its AVX512-BF16/AMX
    kernels read (as torch.compile's CPU weight freezing does), instead of on every call; `activation="gelu"` also
    applies the exact GELU that follows it (timm's MLP) inside the same kernel."""

    def __init__(self, linear: nn.Linear, activation: str = "none") -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(weight, None))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        algorithm = "none" if self.activation == "gelu" else ""  # oneDNN's "none" GELU is the exact (erf) one
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.activation, [], algorithm)


def pack_linears_for_onednn(model: nn.Module) -> nn.Module:
    """Replace, in place, every `nn.Linear` of a bf16 `model` by a `OneDnnLinear`, fusing an MLP's exact GELU into
    its first linear."""
    for module in list(model.modules()):
        if isinstance(module, Mlp) and isinstance(module.act, nn.GELU) and module.act.approximate == "none":
            module.fc1, module.act = OneDnnLinear(module.fc1, "gelu"), nn.Identity()
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, OneDnnLinear(child))
    return model


def _half(model: nn.Module, device: torch.device, name: str, dtype: torch.dtype) -> Engine:
    if device.type == "cpu" and not _cpu_supports(dtype):
        needed = "AVX512-BF16 or AMX-BF16" if dtype == torch.bfloat16 else "AMX-FP16"
        raise EngineError(f"engine {name!r}: this CPU has no fast {name} kernels ({needed} needed; without them {name} "
                          f"is no faster than fp32); on this CPU use int8, bf16 or eager")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise EngineError(f"engine 'bf16': {torch.cuda.get_device_name(device)} has no bf16 support; use fp16")
    converted = cast_parameters(model, dtype, device)
    if device.type == "cpu" and dtype == torch.bfloat16:
        converted = pack_linears_for_onednn(converted)
    return TorchEngine(converted, device, name, name, input_dtype=dtype)


def build_eager(model: nn.Module, device: torch.device, amp: str = "fp32", **_: object) -> Engine:
    """The model itself (moved to `device`, not copied): fp32, or autocast to `amp` (the config's `test.amp`)."""
    if amp not in PRECISIONS:
        raise EngineError(f"unknown autocast precision {amp!r}; choose one of {', '.join(PRECISIONS)}")
    return TorchEngine(model.to(device), device, "eager", amp, amp=amp)


def build_bf16(model: nn.Module, device: torch.device, **_: object) -> Engine:
    """Weights and activations in bfloat16 (a copy of the model), outputs back in float32."""
    return _half(model, device, "bf16", torch.bfloat16)


def build_fp16(model: nn.Module, device: torch.device, **_: object) -> Engine:
    """Weights and activations in float16 (a copy of the model), outputs back in float32."""
    return _half(model, device, "fp16", torch.float16)


def build_int8(model: nn.Module, device: torch.device, **_: object) -> Engine:
    """The exported graph with ONNX Runtime's dynamic int8 quantisation of every layer with weights: linears and
    patch embedding (per-tensor int8 weights, activations quantised per call); norms and attention's q.k and attn.v
    products stay fp32. CPU only. Measured against PyTorch's dynamic int8 linears (torch.ao) on B-224: same
    deviation from fp32, 1.8x faster (docs/benchmarks.md)."""
    if device.type != "cpu":
        raise EngineError(f"engine 'int8' runs on the CPU only (ONNX Runtime's int8 kernels are CPU kernels); on "
                          f"{device} use fp16 or tensorrt")
    _require_package("onnxruntime", "int8", "onnxruntime onnx onnxscript")
    from lib.models.onnx_export import export_to_bytes, ort_session, quantise_int8

    return OnnxRuntimeEngine(ort_session(quantise_int8(export_to_bytes(model))), device, "int8", "int8")


def build_onnxruntime(model: nn.Module, device: torch.device, **_: object) -> Engine:
    """The model exported to ONNX (fp32) and run by ONNX Runtime (CPU, or CUDA with onnxruntime-gpu)."""
    _require_package("onnxruntime", "onnxruntime", "onnxruntime (onnxruntime-gpu for CUDA) onnx onnxscript")
    from lib.models.onnx_export import export_to_bytes, ort_session

    session = ort_session(export_to_bytes(model), device)
    return OnnxRuntimeEngine(session, device, "onnxruntime", "fp32")


def build_tensorrt(model: nn.Module, device: torch.device, **_: object) -> Engine:
    """TensorRT through ONNX Runtime's TensorRT execution provider, fp16 enabled (NVIDIA GPUs only; needs
    onnxruntime-gpu and TensorRT). Not tested here: the development machine has no GPU."""
    if device.type != "cuda":
        raise EngineError(f"engine 'tensorrt' needs an NVIDIA GPU (--device cuda); on {device} use int8, bf16 or "
                          f"onnxruntime")
    _require_package("tensorrt", "tensorrt", "tensorrt onnxruntime-gpu")
    _require_package("onnxruntime", "tensorrt", "onnxruntime-gpu")
    import onnxruntime as ort

    from lib.models.onnx_export import export_to_bytes, ort_session

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise EngineError(f"onnxruntime {ort.__version__} has no TensorRT execution provider; install "
                          f"onnxruntime-gpu built with TensorRT")
    index = device.index or 0
    providers = [("TensorrtExecutionProvider", {"device_id": index, "trt_fp16_enable": True}),
                 ("CUDAExecutionProvider", {"device_id": index})]
    session = ort_session(export_to_bytes(model), device, providers=providers)
    return OnnxRuntimeEngine(session, device, "tensorrt", "fp16")


@dataclass(frozen=True)
class EngineKind:
    """`precision`: what the engine computes in, recorded with results (None: the autocast precision passed as
    `amp`, i.e. the config's `test.amp` on CUDA)."""

    builder: Callable[..., Engine]
    precision: str | None
    summary: str


ENGINES: MappingProxyType[str, EngineKind] = MappingProxyType({
    "eager": EngineKind(build_eager, None, "PyTorch fp32 (autocast to test.amp on CUDA)"),
    "bf16": EngineKind(build_bf16, "bf16", "PyTorch, weights and activations bfloat16"),
    "fp16": EngineKind(build_fp16, "fp16", "PyTorch, weights and activations float16"),
    "int8": EngineKind(build_int8, "int8", "ONNX Runtime dynamic int8 matrix products (CPU)"),
    "onnxruntime": EngineKind(build_onnxruntime, "fp32", "exported ONNX graph in ONNX Runtime"),
    "tensorrt": EngineKind(build_tensorrt, "fp16", "TensorRT via ONNX Runtime (NVIDIA GPU)"),
})
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)


def engine_kind(name: str) -> EngineKind:
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return ENGINES[name]


def engine_precision(name: str, amp: str = "fp32") -> str:
    """What `name` computes in; `amp` is the autocast precision the eager engine would use."""
    return engine_kind(name).precision or amp


def build_engine(model: nn.Module, name: str, device: str | torch.device = "cpu", *, amp: str = "fp32") -> Engine:
    """`model` run by engine `name` on `device` (see ENGINES); `amp` is the eager engine's autocast precision."""
    return engine_kind(name).builder(model, torch.device(device), amp=amp)
