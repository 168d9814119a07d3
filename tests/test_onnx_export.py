"""tracking/export_onnx.py: one self-contained ONNX file whose ONNX Runtime outputs equal the PyTorch model's."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from lib.config import load_experiment
from lib.models import build_model, export_inference_checkpoint
_SCRIPT = Path(__file__).resolve().parents[1] / "tracking" / "export_onnx.py"
_spec = importlib.util.spec_from_file_location("export_onnx", _SCRIPT)
export_onnx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_onnx)

CFG = load_experiment("lorat", "demo")


def _inputs(batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, 56, 56, generator=g), torch.randn(batch, 3, 112, 112, generator=g),
            torch.randint(0, 2, (batch, 4, 4), generator=g))


def _run(path, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """ONNX Runtime alone, as a deployment without this repository would call it."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = dict(zip(["z", "x", "z_feat_mask"], (t.numpy() for t in inputs)))
    return session.run(["score_map", "boxes"], feeds)


def test_checkpoint_export_round_trip(tmp_path, capsys):
    model = build_model(CFG, training=False)
    with torch.no_grad():  # weights that differ from the random build, and O(1) LayerScale so the blocks count
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.02)
            if name.endswith(".gamma"):
                p.fill_(0.5)
    checkpoint = export_inference_checkpoint(model, CFG, tmp_path / "demo.pth")
    out = tmp_path / "onnx" / "demo.onnx"
    assert export_onnx.main(["--script", "lorat", "--config", "demo", "--checkpoint", str(checkpoint),
                             "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "largest |PyTorch fp32 - ONNX Runtime|" in printed and "score_map" in printed
    assert [p.name for p in out.parent.iterdir()] == ["demo.onnx"]  # self-contained: no external weight files
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in graph.graph.initializer)
    for batch in (1, 3):  # dynamic batch
        inputs = _inputs(batch, seed=batch)
        with torch.inference_mode():
            expected = model(*inputs)
        score_map, boxes = _run(out, inputs)
        assert score_map.shape == (batch, 8, 8) and boxes.shape == (batch, 8, 8, 4)
        np.testing.assert_allclose(score_map, expected["score_map"].numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(boxes, expected["boxes"].numpy(), rtol=0, atol=1e-5)
    with torch.inference_mode():  # and the checkpoint's weights, not the random build's, are in the file
        random_map = build_model(CFG, training=False)(*_inputs(1, 1))["score_map"].numpy()
    assert np.abs(_run(out, _inputs(1, 1))[0] - random_map).max() > 1e-3


def test_fp16_export_keeps_float32_io(tmp_path):
    out = tmp_path / "demo_fp16.onnx"
    assert export_onnx.main(["--config", "demo", "--checkpoint", "random", "--out", str(out), "--fp16"]) == 0
    graph = onnx.load(str(out))
    assert {i.type.tensor_type.elem_type for i in graph.graph.input} == {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)
    inputs = _inputs(2, seed=5)
    with torch.inference_mode():
        expected = build_model(CFG, training=False)(*inputs)
    score_map, boxes = _run(out, inputs)
    assert score_map.dtype == np.float32
    # fp16 keeps 11 significant bits: boxes (0..1) to about 1e-3
    np.testing.assert_allclose(boxes, expected["boxes"].numpy(), rtol=0, atol=2e-3)
    np.testing.assert_allclose(score_map, expected["score_map"].numpy(), rtol=0, atol=2e-3)


def test_random_weights_of_a_baseline_are_refused(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="static has no model to export"):
        export_onnx.main(["--script", "static", "--config", "none", "--checkpoint", "random",
                          "--out", str(tmp_path / "x.onnx")])


def test_loratv2_is_refused_with_the_engines_that_run_it(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="KV cache.*--engine eager, fp16 or bf16"):
        export_onnx.main(["--script", "loratv2", "--config", "demo_p1", "--checkpoint", "random",
                          "--out", str(tmp_path / "x.onnx")])
    assert not (tmp_path / "x.onnx").exists()
