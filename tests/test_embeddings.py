"""The input-embedding schemes of the paper's Table 5 (experiments/lorat_ablation/large_{224,378}_emb_*): sinusoidal,
separate, shared + two token types, separate + three token types, and LoRAT's own (upstream
https://github.com/LitingLin/LoRAT: trackit/models/methods/LoRAT/ablation/input_emb/)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ablation_helpers
from ablation_helpers import assert_checkpoints_round_trip, nudge_trainable_, tiny
from lib.config import load_experiment
from lib.models import build_model
from lib.models.backbone import create_vit
from lib.models.lorat import sincos_pos_embed

SCHEMES = ("sinusoidal", "separate", "shared_types", "separate_types_fg")


pytestmark = pytest.mark.usefixtures("one_thread")




def batch(cfg, n: int = 2):
    return ablation_helpers.batch(cfg, n, seed=4)


def test_sinusoidal_values_by_the_formula():
    """MAE's 2-D sin-cos table, element by element with math.sin/cos: the first half of the channels encodes the
    column (sin then cos), the second half the row, frequencies 10000^(-k / (D/4))."""
    dim, grid = 16, 5
    table = sincos_pos_embed(dim, grid)[0]
    quarter = dim // 4
    for i in range(grid):
        for j in range(grid):
            token = table[i * grid + j]
            for k in range(quarter):
                w = 10000 ** (-k / quarter)
                expected = (math.sin(j * w), math.cos(j * w), math.sin(i * w), math.cos(i * w))
                got = (token[k], token[quarter + k], token[2 * quarter + k], token[3 * quarter + k])
                for e, g in zip(expected, got):
                    assert float(g) == pytest.approx(e, abs=1e-6)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_scheme_builds_trains_its_set_and_round_trips(scheme, tmp_path):
    cfg = tiny(f"large_224_emb_{scheme}")
    model = build_model(cfg, training=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    types = {"sinusoidal": 0, "separate": 0, "shared_types": 2, "separate_types_fg": 3}[scheme]
    assert ("token_type_embed" in trainable) == (types > 0)
    if types:
        assert model.token_type_embed.shape == (types, 192)
    assert not any("pos_embed" in n for n in trainable)  # with LoRA the position embeddings are frozen
    assert trainable - {"token_type_embed"} == {n for n in trainable if ".lora" in n or n.startswith("head.")}
    inputs = batch(cfg)
    out = model.train()(*inputs)
    assert out["score_map"].shape == (2, 8, 8) and out["boxes"].shape == (2, 8, 8, 4)
    nudge_trainable_(model)
    assert_checkpoints_round_trip(model, cfg, inputs, tmp_path)
    fft = build_model(tiny(f"large_224_emb_{scheme}_fft"), training=True)
    learned_pos = {n for n, p in fft.named_parameters() if "pos_embed" in n and p.requires_grad}
    assert learned_pos == ({"pos_embed", "z_pos_embed"} if scheme.startswith("separate") else
                           {"pos_embed"} if scheme == "shared_types" else set())


def test_separate_template_embedding_is_resized_from_the_pretrained_grid():
    cfg = tiny("large_224_emb_separate")
    model = build_model(cfg, training=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        pretrained = create_vit(cfg.model.backbone).pos_embed.detach()[0, 1:].reshape(37, 37, 192)
    expected = F.interpolate(pretrained.permute(2, 0, 1)[None], size=(4, 4), mode="bicubic",
                             align_corners=False)[0].permute(1, 2, 0).reshape(1, 16, 192)
    torch.testing.assert_close(model.template_pos_embed(), expected, atol=1e-6, rtol=0)
    shared = build_model(tiny("large_224_emb_shared_types"), training=False)
    sliced = shared.pos_embed.reshape(8, 8, 192)[:4, :4].reshape(1, 16, 192)
    assert torch.equal(shared.template_pos_embed(), sliced)
    sinusoidal = build_model(tiny("large_224_emb_sinusoidal"), training=False)
    assert torch.equal(sinusoidal.template_pos_embed(), sincos_pos_embed(192, 4))
    assert "pos_embed" not in sinusoidal.state_dict()  # fixed, recomputed at build


def test_foreground_indicator_only_where_the_scheme_has_it():
    """Two token types: every template token gets the template row, whatever the mask; three: the mask matters."""
    for config, mask_matters in (("large_224_emb_shared_types", False), ("large_224_emb_separate_types_fg", True),
                                 ("large_224_emb_separate", False)):
        model = build_model(tiny(config), training=False)
        z, x, mask = batch(tiny(config), 1)
        with torch.no_grad():
            a, b = model(z, x, mask), model(z, x, 1 - mask)
        assert (not torch.equal(a["score_map"], b["score_map"])) == mask_matters, config


def test_configs_cover_table_5():
    for res, feat in (("224", 16), ("378", 27)):
        for scheme in SCHEMES:
            for suffix, lora in (("", True), ("_fft", False)):
                cfg = load_experiment("lorat_ablation", f"large_{res}_emb_{scheme}{suffix}")
                assert cfg.model.embedding == scheme and cfg.model.search_feat_size == feat
                assert (cfg.model.lora is not None) == lora and cfg.model.backbone == "dinov2_vitl14"


def test_half_precision_parameters_with_fixed_sinusoidal_buffers():
    """Half-precision engines cast the parameters only; the sinusoidal tables are buffers and must follow."""
    from lib.models.engines import cast_parameters

    cfg = tiny("large_224_emb_sinusoidal")
    model = cast_parameters(build_model(cfg, training=False), torch.bfloat16)
    z, x, mask = batch(cfg, 1)
    with torch.no_grad():
        out = model(z.bfloat16(), x.bfloat16(), mask)
    assert out["score_map"].shape == (1, 8, 8) and torch.isfinite(out["boxes"]).all()
