"""Inference engines against fp32 eager on the demo model (6 blocks of width 192), and their refusals."""
from __future__ import annotations

import pytest
import torch

from lib.config import load_experiment
from lib.models import build_model
from lib.models import engines
from lib.models.engines import ENGINES, EngineError, build_engine, engine_precision
from lib.models.onnx_export import random_inputs

CFG = load_experiment("lorat", "demo")

# Largest deviation from fp32 eager allowed per engine, as a fraction of the largest |output| of fp32 eager.
# bf16 keeps 8 significant bits (rounding error 2^-9 = 0.2 % per operation) and fp16 11 bits (0.02 %); the errors
# of 6 blocks and the head add up, so 3 % and 0.5 %. int8: per-tensor 8-bit weights and activations round to
# 1/254 of each tensor's range (0.4 %) at each of the 31 layers with weights (6 blocks x 4
# linears, 6 head linears, the patch embedding): 10 %. onnxruntime computes the same fp32
# graph with other kernels (different summation order): 1e-4.
RELATIVE_TOLERANCE = {"bf16": 0.03, "fp16": 0.005, "int8": 0.10, "onnxruntime": 1e-4}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    model = build_model(CFG, training=False)
    # LayerScale gains drawn in [0.1, 1): every block contributes to the outputs being compared.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".gamma"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.9 + 0.1)
    return model


@pytest.mark.parametrize("name", sorted(RELATIVE_TOLERANCE))
def test_engine_matches_fp32_eager(model: torch.nn.Module, name: str, monkeypatch) -> None:
    # Numerics only: run half precision even where this CPU would refuse it for being slow.
    monkeypatch.setattr(engines, "_cpu_supports", lambda dtype: True)
    inputs = random_inputs(model, batch=3, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():
        expected = model(*inputs)
    engine = build_engine(model, name, "cpu")
    out = engine(*inputs)
    assert set(out) == {"score_map", "boxes"}
    for key in out:
        assert out[key].dtype == torch.float32 and out[key].shape == expected[key].shape
        deviation = (out[key] - expected[key]).abs().max().item()
        assert deviation <= RELATIVE_TOLERANCE[name] * expected[key].abs().max().item(), (name, key, deviation)
        if name != "onnxruntime":  # a lower precision that gave bit-identical outputs was not applied at all
            assert deviation > 0, (name, key)
    torch.testing.assert_close(model.state_dict(), before, rtol=0, atol=0)  # engines convert a copy
    assert engine.precision == engine_precision(name) == ENGINES[name].precision


def test_bf16_on_cpu_runs_prepacked_onednn_linears_with_the_same_numbers(model: torch.nn.Module,
                                                                         monkeypatch) -> None:
    """The CPU bf16 engine reorders each weight once for oneDNN and fuses the MLP's GELU; that changes where the
    weights live, not what is computed: its outputs equal those of the model simply cast to bf16."""
    monkeypatch.setattr(engines, "_cpu_supports", lambda dtype: True)
    engine = build_engine(model, "bf16", "cpu")
    linears = [m for m in engine.module.modules() if isinstance(m, torch.nn.Linear)]
    packed = [m for m in engine.module.modules() if isinstance(m, engines.OneDnnLinear)]
    assert not linears and len(packed) == 6 * 4 + 6  # 4 per block, 3 + 3 in the head
    assert sum(m.activation == "gelu" for m in packed) == 6 and not any(
        isinstance(m, torch.nn.GELU) for m in engine.module.blocks.modules())
    inputs = random_inputs(model, batch=3, seed=4)
    with torch.inference_mode():
        plain = engines.cast_parameters(model, torch.bfloat16)(*(t.to(torch.bfloat16) for t in inputs[:2]), inputs[2])
    for key, value in engine(*inputs).items():
        torch.testing.assert_close(value, plain[key].float(), rtol=0, atol=1e-2 * plain[key].abs().max().item())


def test_eager_is_the_model_itself_under_autocast(model: torch.nn.Module) -> None:
    inputs = random_inputs(model, batch=2, seed=2)
    engine = build_engine(model, "eager", "cpu", amp="bf16")
    assert engine.module is model and engine.precision == "bf16" == engine_precision("eager", "bf16")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(*inputs)
    for key, value in engine(*inputs).items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, expected[key].float(), rtol=0, atol=0)


def test_unknown_engine_lists_the_known_ones(model: torch.nn.Module) -> None:
    with pytest.raises(EngineError, match="unknown engine 'fp8'.*eager, bf16, fp16, int8, onnxruntime, tensorrt"):
        build_engine(model, "fp8")


@pytest.mark.parametrize("name, device, message", [
    ("tensorrt", "cpu", "needs an NVIDIA GPU"),
    ("int8", "cuda", "runs on the CPU only"),
])
def test_unsupported_device_is_a_clear_error(model: torch.nn.Module, name: str, device: str, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        build_engine(model, name, device)


def test_half_precision_refused_on_a_cpu_without_kernels(model: torch.nn.Module, monkeypatch) -> None:
    monkeypatch.setattr(engines, "_cpu_supports", lambda dtype: False)
    for name in ("bf16", "fp16"):
        with pytest.raises(EngineError, match=f"no fast {name} kernels.*no faster than fp32"):
            build_engine(model, name, "cpu")


def test_onnxruntime_on_cuda_needs_the_gpu_build(model: torch.nn.Module, monkeypatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="no CUDA execution provider.*onnxruntime-gpu"):
        from lib.models.onnx_export import ort_session

        ort_session(b"", "cuda")


def test_half_precision_casts_weights_but_keeps_the_reference_points_exact(model: torch.nn.Module,
                                                                           monkeypatch) -> None:
    monkeypatch.setattr(engines, "_cpu_supports", lambda dtype: True)
    engine = build_engine(model, "bf16", "cpu")
    assert {p.dtype for p in engine.module.parameters()} == {torch.bfloat16}
    feat = model.search_feat_size  # 8 for the demo: cell centres (j + 0.5) / 8
    centres = (torch.arange(feat, dtype=torch.float64) + 0.5) / feat
    ref = engine.module.head.ref_points
    assert ref.dtype == torch.float32
    torch.testing.assert_close(ref[0, :, 0].double(), centres, rtol=0, atol=1e-7)
