"""EVA-02 backbones of the LoRAT timm variant (experiments/lorat_timm/*_eva02*): timm's `Eva` with its rotary position
embedding, separate q/k/v projections and SwiGLU MLP, built as upstream's timm_vit/lorat_eva.py does
(https://github.com/LitingLin/LoRAT): pos-embed grid cropped, each grid its own rope (rescaled to the 16 x 16
reference grid), every token rotated, LoRA on all seven linears of every block. Reduced-depth models, generated weight
files in timm's key layout."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from ablation_helpers import nudge_
from safetensors.torch import save_file
from timm.layers import DropPath, RotaryEmbeddingCat
from torch import nn

from lib.config import apply_overrides, load_experiment
from lib.models import (build_model, export_inference_checkpoint, load_checkpoint, merge_for_inference,
                        trainable_state_dict)
from lib.models.backbone import VIT_SPECS, resolve_backbone_weights
from lib.models.checkpoint import save_official_checkpoint
from lib.models.lora import LoRA, LoRALinear
from lib.models.profile import count_macs, sample_inputs
from tests.test_ablation_e2e import FAST, env_file  # noqa: F401  (env_file: the synthetic-data fixture)

DEPTH = 2
DIM, HEADS, HIDDEN = 768, 12, 2048  # EVA-02 B: SwiGLU hidden width 768 * 4 * 2 / 3
TARGETS = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj", "mlp.fc1_g", "mlp.fc1_x", "mlp.fc2")
NZ, NX = 8 * 8, 16 * 16

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def shallow(monkeypatch):
    """The registered EVA-02 backbones at reduced depth (same layout, same key names)."""
    for name in ("timm_eva02_vitb14", "timm_eva02_vitl14"):
        monkeypatch.setitem(VIT_SPECS, name, dataclasses.replace(VIT_SPECS[name], overrides=(("depth", DEPTH),)))


def timm_eva(seed: int = 3, **kwargs) -> nn.Module:
    """timm's own EVA-02 B at reduced depth, random weights with every tensor (biases, norms) perturbed."""
    torch.manual_seed(seed)
    model = timm.create_model("eva02_base_patch14_224", pretrained=False, num_classes=0, depth=DEPTH, **kwargs).eval()
    nudge_(model.parameters())
    return model


@pytest.fixture
def weights(tmp_path, shallow) -> Path:
    """A timm/Hugging Face format EVA-02 B file (the `model.safetensors` key layout) with random tensors."""
    path = tmp_path / "eva02_base_patch14_224.mim_in22k.safetensors"
    save_file({k: v.contiguous() for k, v in timm_eva().state_dict().items()}, str(path))
    return path


def cfg_of(name: str = "base_224_eva02"):
    return load_experiment("lorat_timm", name)


def batch(n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, 112, 112, generator=g), torch.randn(n, 3, 224, 224, generator=g),
            torch.randint(0, 2, (n, 8, 8), generator=g))


def perturb_trainable_(model: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)


def test_configs_and_missing_weights():
    for size, backbone in (("base", "timm_eva02_vitb14"), ("large", "timm_eva02_vitl14")):
        for suffix, lora in (("", True), ("_fft", False)):
            m = cfg_of(f"{size}_224_eva02{suffix}").model
            assert m.backbone == backbone and (m.lora is not None) == lora
            assert (m.template_size, m.search_size, m.template_feat_size, m.search_feat_size) == (112, 224, 8, 16)
    assert cfg_of("large_224_eva02").model.drop_path == 0.1  # upstream eva02/mixin/large.yaml
    assert cfg_of("large_224_eva02_fft").train.layer_decay == 0.8
    with pytest.raises(FileNotFoundError, match="huggingface.co/timm/eva02_base_patch14_224.mim_in22k/resolve/main"):
        resolve_backbone_weights("timm_eva02_vitb14", "/nonexistent/eva02_base_patch14_224.mim_in22k.safetensors")


def test_training_build_trains_exactly_lora_token_types_and_head(shallow):
    model = build_model(cfg_of(), training=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {f"blocks.{i}.{t}.lora.{m}" for i in range(DEPTH) for t in TARGETS for m in "AB"}
    head = {n for n, _ in model.head.named_parameters(prefix="head")}
    assert head and trainable == lora | head | {"token_type_embed"}
    for i in range(DEPTH):
        for target in TARGETS:
            wrapped = model.blocks[i].get_submodule(target)
            assert isinstance(wrapped, LoRALinear) and not wrapped.linear.weight.requires_grad
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {"pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.norm.weight", "blocks.1.norm1.bias"} <= frozen
    # LoRA r = 64 on q/k/v/proj (768 -> 768), fc1_g/fc1_x (768 -> 2048), fc2 (2048 -> 768): r * (in + out) each
    per_block = 64 * (4 * 2 * DIM + 3 * (DIM + HIDDEN))
    assert sum(model.get_parameter(n).numel() for n in lora) == DEPTH * per_block
    assert model.rope.shape == (NZ + NX, 2 * DIM // HEADS) and "rope" not in model.state_dict()

    out = model(*batch())
    assert out["score_map"].shape == (2, 16, 16) and out["boxes"].shape == (2, 16, 16, 4)
    inference = build_model(cfg_of(), training=False)
    assert not any(isinstance(m, (LoRA, LoRALinear)) for m in inference.modules())
    assert not any(p.requires_grad for p in inference.parameters()) and not inference.training
    assert inference(*batch())["score_map"].shape == (2, 16, 16)

    fft = build_model(cfg_of("base_224_eva02_fft"), training=True)
    assert all(p.requires_grad for p in fft.parameters())


def test_large_drop_path_ramps_linearly_over_depth_as_upstreams_timm_build(shallow):
    """L-224's drop path 0.1 is timm's linear ramp, 0 in the first block to 0.1 in the last (upstream builds timm
    backbones with `drop_path_rate`), not the uniform rate of the Meta DINOv2 backbones."""
    model = build_model(cfg_of("large_224_eva02"), training=True)
    depth = len(model.blocks)
    for i, block in enumerate(model.blocks):
        rate = 0.1 * i / (depth - 1)
        for m in (block.drop_path1, block.drop_path2):
            if i == 0:
                assert isinstance(m, torch.nn.Identity)
            else:
                assert isinstance(m, DropPath) and m.drop_prob == pytest.approx(rate)


def test_a_training_step_moves_exactly_the_trainable_tensors(shallow):
    model = build_model(cfg_of(), training=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(*batch())
    (out["score_map"].square().mean() + out["boxes"].mean()).backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {n for n, p in model.named_parameters() if p.requires_grad}


def test_merged_equals_unmerged(shallow):
    model = build_model(cfg_of(), training=True).eval()
    perturb_trainable_(model)
    merged = merge_for_inference(copy.deepcopy(model))
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    with torch.no_grad():
        a, b = model(*batch()), merged(*batch())
    torch.testing.assert_close(b["score_map"], a["score_map"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b["boxes"], a["boxes"], atol=1e-5, rtol=1e-5)


def test_rope_tables_are_upstreams_per_grid_rope(shallow):
    """Upstream builds `RotaryEmbeddingCat(head_dim, in_pixels=False, feat_shape=grid, ref_feat_shape=(16, 16))` for
    the template and the search grid and concatenates them, template first."""
    model = build_model(cfg_of(), training=False)
    tables = [RotaryEmbeddingCat(DIM // HEADS, in_pixels=False, feat_shape=[n, n], ref_feat_shape=(16, 16)).get_embed()
              for n in (8, 16)]
    assert torch.equal(model.rope, torch.cat(tables))
    # 8 x 8 positions are rescaled to span the 16 x 16 reference grid: template row 1 sits where search row 2 does
    z, x = model.rope[:NZ].view(8, 8, -1), model.rope[NZ:].view(16, 16, -1)
    torch.testing.assert_close(z[1, 3], x[2, 6], atol=1e-6, rtol=0)


@pytest.mark.parametrize("grid", [8, 16])
def test_blocks_compute_what_timm_eva_computes(grid, weights):
    """On one grid alone (template-only or search-only), LoRAT's frozen backbone with its rope slice is timm's Eva
    without class token at that image size, same weights: every token rotated, rope of the grid's own size (the
    upstream template/search layout concatenates exactly these two)."""
    model = build_model(cfg_of(), training=False, backbone_weights=weights)
    reference = timm_eva(class_token=False, img_size=14 * grid)
    state = {k: v for k, v in timm_eva().state_dict().items() if k != "cls_token"}
    pos = state["pos_embed"][:, 1:].reshape(1, 16, 16, DIM)[:, :grid, :grid].reshape(1, grid * grid, DIM)
    reference.load_state_dict({**state, "pos_embed": pos}, strict=True)
    image = torch.randn(2, 3, 14 * grid, 14 * grid, generator=torch.Generator().manual_seed(grid))
    rope = model.rope[:NZ] if grid == 8 else model.rope[NZ:]
    pos_embed = model.template_pos_embed() if grid == 8 else model.pos_embed
    with torch.no_grad():
        tokens = model.patch_embed(image) + pos_embed
        for block in model.blocks:
            tokens = block(tokens, rope=rope)
        torch.testing.assert_close(tokens, reference.forward_features(image), atol=1e-5, rtol=1e-5)


def test_full_forward_feeds_the_blocks_the_joint_rope(weights):
    model = build_model(cfg_of(), training=False, backbone_weights=weights)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda _m, args, kwargs: seen.append((args[0], kwargs)),
                                              with_kwargs=True)
    z, x, mask = batch(1)
    with torch.no_grad():
        model(z, x, mask)
    tokens, kwargs = seen[0]
    assert kwargs["rope"] is model.rope and tokens.shape == (1, NZ + NX, DIM)
    assert all(block.attn.num_prefix_tokens == 0 for block in model.blocks)


def test_checkpoint_round_trips(weights, tmp_path):
    """Trainer-style trainable dict, the official release layout, and the merged export all load into the
    inference build and reproduce the training model."""
    cfg = cfg_of()
    model = build_model(cfg, training=True, backbone_weights=weights).eval()
    perturb_trainable_(model)
    with torch.no_grad():
        expected = model(*batch())

    def check(path: Path, backbone: Path | None) -> None:
        inference = build_model(cfg, training=False, backbone_weights=backbone)
        load_checkpoint(inference, path, backbone_weights=backbone)
        with torch.no_grad():
            out = inference(*batch())
        torch.testing.assert_close(out["score_map"], expected["score_map"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out["boxes"], expected["boxes"], atol=1e-5, rtol=1e-5)

    torch.save({"model": trainable_state_dict(model), "config": cfg.to_dict()}, tmp_path / "train.pth")
    check(tmp_path / "train.pth", weights)
    official = save_official_checkpoint(model, tmp_path / "official.safetensors", 64, False, swiglu=False)
    from safetensors.torch import load_file
    keys = set(load_file(str(official)))
    assert {"blocks.0.attn.q_proj.lora.A", "blocks.1.mlp.fc1_g.lora.B", "blocks.0.attn.k_proj.lora.A"} <= keys
    check(official, weights)
    export = export_inference_checkpoint(merge_for_inference(copy.deepcopy(model)), cfg, tmp_path / "export.pth")
    check(export, None)


def test_vpt_and_ia3_are_refused_with_a_clear_error(shallow):
    for method in ("vpt", "ia3"):
        cfg = apply_overrides(load_experiment("lorat_ablation", f"base_224_{'vpt5' if method == 'vpt' else 'ia3'}"),
                              ["model.backbone=timm_eva02_vitb14"])
        with pytest.raises(ValueError, match=f"'{method}' is built for timm ViT blocks, not EvaBlock"):
            build_model(cfg, training=True)


def test_macs_count_the_eva_attention_products(monkeypatch):
    """One more block adds the MACs of its seven linears and of q @ k^T and attn @ v over the 320 tokens (thop counts
    no LayerNorm MACs; the rotation is elementwise)."""
    cfg = cfg_of()
    macs = []
    for depth in (1, 2):
        monkeypatch.setitem(VIT_SPECS, "timm_eva02_vitb14",
                            dataclasses.replace(VIT_SPECS["timm_eva02_vitb14"], overrides=(("depth", depth),)))
        macs.append(count_macs(build_model(cfg, training=False), sample_inputs(cfg)))
    n = NZ + NX
    linears = n * (4 * DIM * DIM + 3 * DIM * HIDDEN)
    attention = 2 * n * n * DIM
    assert macs[1] - macs[0] == linears + attention


def test_train_track_score(env_file, tmp_path, shallow):  # noqa: F811
    """A few training steps through `lib.train.run_training` on synthetic data, the final export in the tracker on a
    synthetic sequence, scored with the OPE analysis (tests/test_ablation_e2e.py, on EVA-02)."""
    from lib.test.analysis.metrics import SequenceGT, evaluate_ope
    from lib.test.tracker import TrackerSpec
    from lib.test.tracker.lorat import build_tracker
    from lib.train import run_training
    from lib.utils.paths import RunPaths
    from lib.utils.synthetic import SyntheticSpec, generate_sequence

    path = tmp_path / "eva.safetensors"
    save_file({k: v.contiguous() for k, v in timm_eva().state_dict().items()}, str(path))
    assert run_training.main(["--script", "lorat_timm", "--config", "base_224_eva02", "--save_dir", str(tmp_path),
                              "--env_file", str(env_file), "--cpu", "--backbone_weights", str(path),
                              "--set", *FAST]) == 0
    export = RunPaths.for_run(tmp_path, "lorat_timm", "base_224_eva02").final_export("base_224_eva02")
    cfg = apply_overrides(cfg_of(), FAST)
    tracker = build_tracker(cfg, TrackerSpec("lorat_timm", "base_224_eva02", checkpoint=str(export),
                                             backbone_weights=str(path)))
    frames, boxes, _ = generate_sequence(SyntheticSpec(domain="B", num_sequences=1, frames=(5, 5), seed=9), 0)
    tracker.initialize(frames[0], boxes[0])
    predictions = [boxes[0]] + [tracker.track(frame)[0] for frame in frames[1:]]
    assert all(np.all(np.isfinite(box)) for box in predictions)
    scores = evaluate_ope({"seq": [np.stack(predictions)]}, [SequenceGT("seq", boxes)])
    assert 0.0 <= scores["AUC"] <= 100.0 and np.isfinite(scores["Precision"])
