"""LoRATv2's network (lib/models/loratv2.py), its checkpoints and backbone files, and its per-action MACs.

References are independent of the code under test: the chunk mask and key names written by hand from the upstream
layout (https://github.com/LitingLin/LoRAT, trackit/models/methods/LoRATv2/model.py), timm's own block run with that
mask, weight files written here in Meta's and timm's key layouts with random values, parameter counts and MACs as
upstream's model gives them (docs/loratv2.md).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lib.config import ConfigError, apply_overrides, load_experiment
from lib.models import (MODEL_BUILDERS, CheckpointError, build_model, export_inference_checkpoint, load_checkpoint,
                        merge_for_inference, trainable_state_dict)
from lib.models.backbone import create_vit, resolve_backbone_weights
from lib.models.loratv2 import LoRATv2, chunk_mask
from lib.models.loratv2_checkpoint import save_official_checkpoint
from lib.models.profile import loratv2_action_macs

DIM, DEPTH, HEADS = 192, 6, 3  # vit_demo_p14_reg4
GRID = 37


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def demo(phase: int):
    return load_experiment("loratv2", f"demo_p{phase}")


def inputs(cfg, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 3, cfg.model.template_size, cfg.model.template_size, generator=g)
    xs = [torch.randn(batch, 3, s, s, generator=g) for s in cfg.model.search_sizes]
    feat = cfg.model.template_size // 14
    mask = (torch.rand(batch, feat, feat, generator=g) > 0.5).long()
    return z, xs, mask


def perturb_trainable_(model: torch.nn.Module, seed: int = 1, scale: float = 0.05) -> None:
    """Give every trainable tensor a random value, so that LoRA updates, embeddings and heads all matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def unit_layer_scales_(model: torch.nn.Module) -> None:
    """timm initialises the layer scales at 1e-5; at 1 every branch (and so every expert) visibly counts."""
    with torch.no_grad():
        for block in model.blocks:
            block.ls1.gamma.fill_(1)
            block.ls2.gamma.fill_(1)


def meta_reg4_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Meta's torch-hub `dinov2_vit*14_reg4_pretrain.pth` layout (facebookresearch/dinov2, block_chunks=0, 4 register
    tokens), at the demo width and depth, random values."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    state = {"cls_token": rand(1, 1, DIM), "register_tokens": rand(1, 4, DIM), "mask_token": rand(1, DIM),
             "pos_embed": rand(1, GRID * GRID + 1, DIM), "patch_embed.proj.weight": rand(DIM, 3, 14, 14),
             "patch_embed.proj.bias": rand(DIM), "norm.weight": 1 + rand(DIM), "norm.bias": rand(DIM)}
    for i in range(DEPTH):
        p = f"blocks.{i}."
        for name, out_f, in_f in (("attn.qkv", 3 * DIM, DIM), ("attn.proj", DIM, DIM), ("mlp.fc1", 4 * DIM, DIM),
                                  ("mlp.fc2", DIM, 4 * DIM)):
            state[p + name + ".weight"] = rand(out_f, in_f)
            state[p + name + ".bias"] = rand(out_f)
        for name in ("norm1", "norm2"):
            state[p + name + ".weight"] = 1 + rand(DIM)
            state[p + name + ".bias"] = rand(DIM)
        state[p + "ls1.gamma"] = rand(DIM)
        state[p + "ls2.gamma"] = rand(DIM)
    return state


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = meta_reg4_state()
    path = tmp_path_factory.mktemp("pretrained") / "dinov2_demo_reg4_pretrain.pth"
    torch.save(state, path)
    return path, state


# ---- structure ----

def test_chunk_mask_is_block_lower_triangular():
    # chunks of 2, 3, 1 tokens: chunk c sees chunks 0..c, everything inside its own chunk
    expected = torch.tensor([[1, 1, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0, 0],
                             [1, 1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(chunk_mask((2, 3, 1)), expected)


@pytest.mark.parametrize("config,chunks,grids", [("p1_base_224", (260, 256), (16,)),
                                                 ("p2_base_378", (260, 256, 729), (16, 27)),
                                                 ("demo_p2", (4 + 16, 36, 81), (6, 9))])
def test_chunk_sizes_and_cache_layout(config, chunks, grids):
    cfg = load_experiment("loratv2", config)
    with torch.device("meta"):
        model = build_model(cfg, training=False)
    assert model.chunk_sizes == chunks and model.num_streams == len(grids)
    assert [h.feat_size for h in model.heads] == list(grids)
    cache = model.new_kv_cache(3, dtype=torch.float16)
    heads = model.blocks[0].attn.num_heads
    assert len(cache.keys) == len(cache.values) == len(model.blocks) and cache.capacity == 3
    assert cache.keys[0].shape == (3, heads, sum(chunks), model.embed_dim // heads)
    assert cache.keys[0].dtype == torch.float16


def test_pretrained_grid_and_registers():
    """timm's reg4 DINOv2 at 518 px: 37 x 37 position grid without a class row, 4 registers (demo and B)."""
    for name in ("vit_demo_p14_reg4", "dinov2_reg4_vitb14"):
        with torch.device("meta"):
            vit = create_vit(name)
        assert vit.patch_embed.grid_size == (37, 37) and vit.no_embed_class
        assert vit.pos_embed.shape[1] == 37 * 37 and vit.reg_token.shape[1] == 4


def test_embeddings_take_the_top_left_of_the_raw_grid():
    cfg = demo(2)
    model = build_model(cfg, training=False)
    z, xs, mask = inputs(cfg, batch=1)
    grid = model.pos_embed.detach().reshape(GRID, GRID, DIM)
    patches = F.conv2d(xs[1], model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=14)
    expected = patches.flatten(2).transpose(1, 2) + grid[:9, :9].reshape(81, DIM) + \
        model.search_region_token_type_embed[1]
    torch.testing.assert_close(model.stream_tokens(1, xs[1]), expected)
    chunk0 = model.template_tokens(z, mask)
    assert torch.equal(chunk0[0, :4], model.reg_token[0])  # registers: no position, no token type
    zp = F.conv2d(z, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=14).flatten(2).transpose(1, 2)
    types = torch.where(mask.reshape(1, 16, 1).bool(), model.template_token_type_embed[1],
                        model.template_token_type_embed[0])
    torch.testing.assert_close(chunk0[:, 4:], zp + grid[:4, :4].reshape(16, DIM) + types)


def test_blocks_equal_timm_blocks_under_the_chunk_mask():
    """Before any training all experts are the pretrained linears, so a LoRATv2 block is timm's block with the
    chunked-causal mask."""
    cfg = demo(2)
    model = build_model(cfg, training=False)
    torch.manual_seed(cfg.train.seed)
    vit = create_vit(cfg.model.backbone)  # build_model draws the backbone first under the same seed
    tokens = torch.randn(2, sum(model.chunk_sizes), DIM)
    mask = chunk_mask(model.chunk_sizes)
    ours, reference = tokens, tokens
    with torch.no_grad():
        for block, timm_block in zip(model.blocks, vit.blocks):
            ours, reference = block(ours, model.chunk_sizes), timm_block(reference, attn_mask=mask)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_experts_are_routed_by_chunk():
    model = build_model(demo(1), training=False)
    tokens = torch.randn(2, sum(model.chunk_sizes), DIM)
    c0 = model.chunk_sizes[0]
    unit_layer_scales_(model)

    def run() -> torch.Tensor:
        out = tokens
        for block in model.blocks:
            out = block(out, model.chunk_sizes)
        return out

    before = run()
    with torch.no_grad():
        for block in model.blocks:
            for role in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
                weight = block.get_submodule(role)[1].weight
                weight.add_(torch.randn_like(weight) * 0.1)
    after_expert1 = run()
    assert torch.equal(after_expert1[:, :c0], before[:, :c0])  # the template chunk never sees expert 1
    assert not torch.allclose(after_expert1[:, c0:], before[:, c0:], atol=1e-3)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv[0].weight.add_(torch.randn_like(block.attn.qkv[0].weight) * 0.1)
    after_expert0 = run()
    assert not torch.allclose(after_expert0[:, :c0], after_expert1[:, :c0], atol=1e-3)
    assert not torch.allclose(after_expert0[:, c0:], after_expert1[:, c0:], atol=1e-3)


# ---- trainable parts and counts ----

def _lora_keys(experts, depth: int) -> set[str]:
    keys = set()
    for i in range(depth):
        for e in experts:
            keys |= {f"blocks.{i}.attn.qkv.{e}.lora_{s}.{m}" for s in "qkv" for m in "AB"}
            keys |= {f"blocks.{i}.{r}.{e}.lora.{m}" for r in ("attn.proj", "mlp.fc1", "mlp.fc2") for m in "AB"}
    return keys


def _head_keys(stream: int) -> set[str]:
    return {f"heads.{stream}.{mlp}.layers.{j}.{p}" for mlp in ("cls_mlp", "reg_mlp") for j in range(3)
            for p in ("weight", "bias")}


def test_trainable_sets_per_phase():
    p1 = build_model(demo(1), training=True)
    assert {n for n, p in p1.named_parameters() if p.requires_grad} == \
        _lora_keys((0, 1), DEPTH) | {"template_token_type_embed", "search_region_token_type_embed.0"} | _head_keys(0)
    p2 = build_model(demo(2), training=True)
    assert {n for n, p in p2.named_parameters() if p.requires_grad} == \
        _lora_keys((2,), DEPTH) | {"search_region_token_type_embed.1"} | _head_keys(1)
    assert p2.lora_experts() == (2,) and p1.lora_experts() == (0, 1)
    inference = build_model(demo(2), training=False)
    assert not any(p.requires_grad for p in inference.parameters()) and not inference.training
    assert inference.is_merged() and inference.lora_experts() == ()


@pytest.mark.parametrize("config,trainable,tensors", [("p1_base_224", 23_602_181, 302),
                                                      ("p1_large_224", 60_829_701, 590),
                                                      ("p2_base_378", 12_983_813, 157),
                                                      ("p2_large_378", 32_516_101, 301)])
def test_trainable_counts_match_upstream(config, trainable, tensors):
    with torch.device("meta"):
        model = build_model(load_experiment("loratv2", config), training=True)
    params = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in params) == trainable and len(params) == tensors
    # drop path: none for B; for L timm's linear ramp from 0 (first block) to 0.1 (last), not a uniform rate
    rates = [getattr(block.drop_path1, "drop_prob", 0.0) for block in model.blocks]  # rate 0: timm's Identity
    assert rates == pytest.approx([0.1 * i / 23 for i in range(24)] if "large" in config else [0.0] * 12)


# ---- config checks ----

def test_config_errors():
    cfg = demo(1)
    with pytest.raises(ConfigError, match="alpha == model.lora.r"):
        build_model(apply_overrides(cfg, ["model.lora.alpha=16"]), training=True)
    with pytest.raises(ConfigError, match="targets"):
        build_model(apply_overrides(cfg, ["model.lora.targets=[q, v]"]), training=True)
    with pytest.raises(ConfigError, match="model.loratv2 section"):
        build_model(apply_overrides(cfg, ["model.loratv2=null"]), training=True)
    lorat = load_experiment("lorat", "demo_lora")
    with pytest.raises(ConfigError, match="model.loratv2 belongs to loratv2"):
        build_model(apply_overrides(lorat, ["model.loratv2={phase: 1}"]))
    with pytest.raises(ValueError, match="MODEL_BUILDERS"):
        build_model(type(cfg)(**{**cfg.__dict__, "script": "nope"}))
    assert set(MODEL_BUILDERS) >= {"lorat", "lorat_ablation", "lorat_timm", "loratv2"}


# ---- forward equivalences ----

@pytest.mark.parametrize("phase", [1, 2])
def test_merged_equals_unmerged(phase):
    cfg = demo(phase)
    model = build_model(cfg, training=True).eval()
    perturb_trainable_(model)
    z, xs, mask = inputs(cfg)
    with torch.no_grad():
        expected = model(z, xs, mask)
        merged = merge_for_inference(copy.deepcopy(model))
        assert merged.is_merged()
        got = merged(z, xs, mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("phase", [1, 2])
@pytest.mark.parametrize("slot_ids, untouched", [([3, 1], [0, 2]), ([1, 2], [0, 3])])  # gathered / sliced rows
def test_streaming_equals_full_forward(phase, slot_ids, untouched):
    """init (+ update of the reference) + track on cache slots shared with another sequence equals the chunked
    forward, and the other sequence's rows are untouched (scattered slots are gathered, consecutive ones sliced)."""
    cfg = demo(phase)
    training = build_model(cfg, training=True).eval()
    perturb_trainable_(training)
    model = merge_for_inference(training)
    z, xs, mask = inputs(cfg)
    with torch.no_grad():
        expected = model(z, xs, mask)
        cache = model.new_kv_cache(4)
        slots = torch.tensor(slot_ids)
        model.init(z, mask, cache, slots)
        for i in range(model.num_streams - 1):
            model.update(i, xs[i], cache, slots)
        got = model.track(model.num_streams - 1, xs[-1], cache, slots)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert got["score_map"].dtype == torch.float32
    assert all(k[untouched].abs().sum() == 0 for k in cache.keys)  # the other slots never written


def test_streaming_uses_the_cached_reference():
    cfg = demo(2)
    model = build_model(cfg, training=False)
    unit_layer_scales_(model)
    z, xs, mask = inputs(cfg, batch=1)
    with torch.no_grad():
        cache = model.new_kv_cache(1)
        slots = torch.tensor([0])
        model.init(z, mask, cache, slots)
        model.update(0, xs[0], cache, slots)
        first = model.track(1, xs[1], cache, slots)
        model.update(0, torch.flip(xs[0], dims=[-1]), cache, slots)
        second = model.track(1, xs[1], cache, slots)
        full = model(z, [torch.flip(xs[0], dims=[-1]), xs[1]], mask)
    assert not torch.allclose(first["score_map"], second["score_map"], atol=1e-4)
    torch.testing.assert_close(second, full, atol=1e-5, rtol=1e-5)


def test_streaming_half_precision_cache():
    cfg = demo(1)
    model = build_model(cfg, training=False)
    z, xs, mask = inputs(cfg)
    with torch.no_grad():
        expected = model(z, xs, mask)
        cache = model.new_kv_cache(2, dtype=torch.bfloat16)
        model.init(z, mask, cache, torch.arange(2))
        got = model.track(0, xs[0], cache, torch.arange(2))
    torch.testing.assert_close(got["boxes"], expected["boxes"], atol=0.05, rtol=0)


def test_streaming_needs_the_merged_build():
    cfg = demo(1)
    model = build_model(cfg, training=True)
    z, xs, mask = inputs(cfg)
    with pytest.raises(RuntimeError, match="training=False"):
        model.init(z, mask, model.new_kv_cache(2), torch.arange(2))
    with pytest.raises(ValueError, match="update"):
        build_model(cfg).update(0, xs[0], model.new_kv_cache(2), torch.arange(2))


# ---- backbone files ----

def test_meta_reg4_backbone_file_maps_into_the_model(backbone_file):
    path, state = backbone_file
    model = build_model(demo(2), training=False, backbone_weights=path)
    assert torch.equal(model.reg_token, state["register_tokens"])
    assert torch.equal(model.pos_embed, state["pos_embed"][:, 1:])  # the class row dropped
    for s in range(2):
        assert torch.equal(model.norms[s].weight, state["norm.weight"])
    for e in range(3):
        assert torch.equal(model.blocks[4].attn.qkv[e].weight, state["blocks.4.attn.qkv.weight"])
        assert torch.equal(model.blocks[4].mlp.fc2[e].bias, state["blocks.4.mlp.fc2.bias"])
    assert torch.equal(model.blocks[2].ls1.gamma, state["blocks.2.ls1.gamma"])


def test_timm_layout_backbone_file_gives_the_same_model(backbone_file, tmp_path):
    from safetensors.torch import save_file

    path, state = backbone_file
    timm_state = {k: v for k, v in state.items() if k not in ("mask_token", "register_tokens", "cls_token",
                                                               "pos_embed")}
    timm_state |= {"reg_token": state["register_tokens"], "pos_embed": state["pos_embed"][:, 1:].contiguous(),
                   "cls_token": state["cls_token"] + state["pos_embed"][:, :1]}
    timm_path = tmp_path / "vit_small_reg4.safetensors"
    save_file(timm_state, str(timm_path))
    a = build_model(demo(1), training=False, backbone_weights=path)
    b = build_model(demo(1), training=False, backbone_weights=timm_path)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_missing_reg4_file_names_both_downloads(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        resolve_backbone_weights("dinov2_reg4_vitl14", tmp_path / "nope.pth")
    message = str(info.value)
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth" in message
    assert "huggingface.co/timm/vit_large_patch14_reg4_dinov2.lvd142m" in message


# ---- checkpoints ----

def _official_phase1_keys(depth: int) -> set[str]:
    """Upstream's phase-1 file, written from its layout: q/k/v adapters nested under their slot."""
    keys = {"template_token_type_embed", "search_region_token_type_embed.0"} | _head_keys(0)
    for i in range(depth):
        for e in (0, 1):
            keys |= {f"blocks.{i}.attn.qkv.{e}.{s}.lora.{m}" for s in "qkv" for m in "AB"}
            keys |= {f"blocks.{i}.{r}.{e}.lora.{m}" for r in ("attn.proj", "mlp.fc1", "mlp.fc2") for m in "AB"}
    return keys


@pytest.fixture(scope="module")
def trained(backbone_file, tmp_path_factory):
    """A phase-1 training model with random trained tensors, its official file, then a phase-2 training model
    initialised from that file and trained (randomly) in turn, with its official file."""
    path, _ = backbone_file
    folder = tmp_path_factory.mktemp("ckpt")
    p1 = build_model(demo(1), training=True, backbone_weights=path).eval()
    perturb_trainable_(p1, seed=1)
    p1_file = save_official_checkpoint(p1, folder / "p1.safetensors")
    p2 = build_model(demo(2), training=True, backbone_weights=path).eval()
    report = load_checkpoint(p2, p1_file, backbone_weights=path)
    perturb_trainable_(p2, seed=2)
    p2_file = save_official_checkpoint(p2, folder / "p2.safetensors")
    return {"p1": p1, "p1_file": p1_file, "p2": p2, "p2_file": p2_file, "init_report": report, "folder": folder}


def test_official_file_layout(trained):
    from safetensors.torch import load_file

    assert set(load_file(str(trained["p1_file"]))) == _official_phase1_keys(DEPTH)
    p2_keys = set(load_file(str(trained["p2_file"])))
    assert "blocks.0.attn.qkv.2.v.lora.B" in p2_keys and "heads.1.reg_mlp.layers.2.bias" in p2_keys
    experts = {int(re.match(r"blocks\.\d+\.(attn|mlp)\.\w+\.(\d+)\.", k)[2]) for k in p2_keys if k.startswith("blocks.")}
    assert experts == {2}


def test_phase1_file_into_merged_build(trained, backbone_file):
    cfg, path = demo(1), backbone_file[0]
    model = build_model(cfg, training=False, backbone_weights=path)
    report = load_checkpoint(model, trained["p1_file"], backbone_weights=path)
    z, xs, mask = inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(model(z, xs, mask), trained["p1"](z, xs, mask), atol=1e-5, rtol=1e-5)
    assert len(report.merged_lora) == DEPTH * 2 * (3 + 3) and report.lora_scaling == 1.0
    assert report.sources["pos_embed"] == str(path)
    assert report.sources["blocks.0.attn.qkv.1.weight"] == str(trained["p1_file"])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    load_checkpoint(model, trained["p1_file"], backbone_weights=path)  # again: not additive
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    half = build_model(cfg, training=False).to(torch.bfloat16)  # merged in float32, then cast
    load_checkpoint(half, trained["p1_file"], backbone_weights=path)
    assert all(torch.equal(weights[k].to(torch.bfloat16), v) for k, v in half.state_dict().items())


def test_phase2_training_from_phase1_file(trained):
    report, p1, p2 = trained["init_report"], trained["p1"], trained["p2"]
    assert set(report.initialised) == {k for k in p2.state_dict() if ".2.lora" in k or k.startswith("heads.1.")
                                       or k == "search_region_token_type_embed.1"}
    merged_p1 = merge_for_inference(copy.deepcopy(p1))
    for role in ("attn.qkv", "mlp.fc1"):
        for e in (0, 1):
            assert torch.equal(p2.blocks[3].get_submodule(role)[e].weight,
                               merged_p1.blocks[3].get_submodule(role)[e].weight)
    assert torch.equal(p2.heads[0].cls_mlp.layers[0].weight, p1.heads[0].cls_mlp.layers[0].weight)
    assert not p2.heads[0].cls_mlp.layers[0].weight.requires_grad


def test_phase2_file_with_its_phase1_file(trained, backbone_file):
    cfg, path = demo(2), backbone_file[0]
    model = build_model(cfg, training=False, backbone_weights=path)
    load_checkpoint(model, trained["p2_file"], backbone_weights=path, base_checkpoint=trained["p1_file"])
    z, xs, mask = inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(model(z, xs, mask), trained["p2"](z, xs, mask), atol=1e-5, rtol=1e-5)


def test_phase_files_alone_are_errors(trained, backbone_file):
    path = backbone_file[0]
    model = build_model(demo(2), training=False, backbone_weights=path)
    with pytest.raises(CheckpointError, match="phase-2 file.*base_checkpoint="):
        load_checkpoint(model, trained["p2_file"], backbone_weights=path)
    with pytest.raises(CheckpointError, match="phase-1 file; the phase-2 file .* is missing"):
        load_checkpoint(model, trained["p1_file"], backbone_weights=path)
    with pytest.raises(CheckpointError, match="both hold"):
        load_checkpoint(model, trained["p1_file"], backbone_weights=path, base_checkpoint=trained["p1_file"])


def test_lora_file_into_merged_build_needs_the_backbone(trained):
    model = build_model(demo(1), training=False)
    with pytest.raises(CheckpointError, match="backbone_weights"):
        load_checkpoint(model, trained["p1_file"])


def test_unknown_keys_are_errors(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(trained["p1_file"]))
    state["blocks.0.attn.qkv.0.x.lora.A"] = torch.zeros(1)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    with pytest.raises(CheckpointError, match=r"attn\.qkv\.0\.x\.lora\.A"):
        load_checkpoint(build_model(demo(1), training=True), bad)


def test_own_training_checkpoint_and_export(trained, backbone_file, tmp_path):
    cfg, path = demo(2), backbone_file[0]
    own = tmp_path / "last.pth"
    torch.save({"model": trainable_state_dict(trained["p2"]), "config": cfg.to_dict()}, own)
    model = build_model(cfg, training=False, backbone_weights=path)
    load_checkpoint(model, own, backbone_weights=path, base_checkpoint=trained["p1_file"])
    export = export_inference_checkpoint(model, cfg, tmp_path / "export.pth")
    fresh = build_model(cfg, training=False)  # a full export needs no backbone file
    report = load_checkpoint(fresh, export)
    assert set(report.sources.values()) == {str(export)}
    z, xs, mask = inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(fresh(z, xs, mask), trained["p2"](z, xs, mask), atol=1e-5, rtol=1e-5)


# ---- compute ----

def test_action_macs_match_the_formula():
    """Per block with N query tokens and L keys 12 N D^2 + 2 N L D, the last block of init/update only its K/V
    (2 N D^2), patch embedding N 588 D, head N (4 D^2 + 5 D): written out here for the demo phase-2 model."""
    model = build_model(demo(2), training=False)
    d = DIM

    def blocks(n: int, keys: int, full_last: bool) -> int:
        per = 12 * n * d * d + 2 * n * keys * d
        return (DEPTH - 1) * per + (per if full_last else 2 * n * d * d)

    init = blocks(20, 20, False) + 16 * 588 * d
    update = blocks(36, 56, False) + 36 * 588 * d
    track = blocks(81, 137, True) + 81 * 588 * d + 81 * (4 * d * d + 5 * d)
    assert loratv2_action_macs(model) == {"init": init, "update_0": update, "track_1": track}


@pytest.mark.parametrize("config,expected", [("p1_base_224", {"init": 21.8, "track_0": 24.9}),
                                             ("p2_base_378", {"init": 21.8, "update_0": 22.6, "track_1": 80.7})])
def test_action_macs_of_the_base_variants(config, expected):
    with torch.device("meta"):
        model = build_model(load_experiment("loratv2", config), training=False)
    macs = loratv2_action_macs(model)
    assert macs.keys() == expected.keys()
    for action, giga in expected.items():
        assert macs[action] / 1e9 == pytest.approx(giga, rel=0.01)


def test_loratv2_is_a_registered_family():
    assert isinstance(build_model(demo(1)), LoRATv2)


def test_profile_script_reports_every_action(run_cli):
    result = run_cli("profile_model", "--script", "loratv2", "--config", "demo_p2", "--device", "cpu",
                     "--warmup", "0", "--runs", "1")
    assert result.returncode == 0, result.stderr
    for line in ("trainable:", "MACs init:", "MACs update_0:", "MACs track_1:", "latency of track_1"):
        assert line in result.stdout
    assert "MACs track_1:                    0.26 G" in result.stdout  # 261,724,608 (test above)


def test_builds_are_reproducible_under_the_seed():
    a, b = build_model(demo(2), training=True), build_model(demo(2), training=True)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    other = build_model(apply_overrides(demo(2), ["train.seed=7"]), training=True)
    assert not torch.equal(other.heads[1].cls_mlp.layers[0].weight, a.heads[1].cls_mlp.layers[0].weight)
