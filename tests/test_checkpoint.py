"""Every checkpoint layout LoRAT users meet (the official releases as upstream trackit/LoRAT reads them in
trackit/models/__init__.py, the pytracking port's state dicts, this project's files), loaded strictly into training
(adapter) and inference (merged) models; fixtures are written by the tests in the real formats."""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file

from lib.config import ExperimentConfig, load_experiment
from lib.models import build_model, export_inference_checkpoint, load_checkpoint, merge_for_inference
from lib.models.checkpoint import CheckpointError, official_key, save_official_checkpoint
from tests.test_backbone import S_DEPTH, S_DIM, write_small_meta_checkpoint

HEAD_KEYS = [f"head.{m}.layers.{i}.{p}" for m in ("cls_mlp", "reg_mlp") for i in range(3) for p in ("weight", "bias")]


def _inputs(cfg: ExperimentConfig, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    t, s, f = cfg.model.template_size, cfg.model.search_size, cfg.model.template_feat_size
    return (torch.randn(1, 3, t, t, generator=g), torch.randn(1, 3, s, s, generator=g),
            torch.randint(0, 2, (1, f, f), generator=g))


def _run(model, inputs) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model.eval()(*inputs)


def _assert_outputs(a, b, atol: float = 0.0) -> None:
    for key in ("score_map", "boxes"):
        if atol == 0.0:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0)


def official_trainable_state(model) -> dict[str, torch.Tensor]:
    """The trainable keys under the official release names (upstream trackit/LoRAT: the
    q/k/v adapters of trackit/models/methods/LoRAT/modules/lora/ nested under their slot), built module by module."""
    state = {"token_type_embed": model.token_type_embed.detach().clone()}
    for key in HEAD_KEYS:
        module = model.head.get_submodule(key.removeprefix("head.").rsplit(".", 1)[0])
        state[key] = getattr(module, key.rsplit(".", 1)[1]).detach().clone()
    for i, block in enumerate(model.blocks):
        for slot in "qkv":
            adapter = getattr(block.attn.qkv, f"lora_{slot}")
            state[f"blocks.{i}.attn.qkv.{slot}.lora.A"] = adapter.A.detach().clone()
            state[f"blocks.{i}.attn.qkv.{slot}.lora.B"] = adapter.B.detach().clone()
        for name, wrapped in (("attn.proj", block.attn.proj), ("mlp.fc1", block.mlp.fc1), ("mlp.fc2", block.mlp.fc2)):
            state[f"blocks.{i}.{name}.lora.A"] = wrapped.lora.A.detach().clone()
            state[f"blocks.{i}.{name}.lora.B"] = wrapped.lora.B.detach().clone()
    return state


class Builds:
    """Builds each (config, training, backbone) once and hands out deep copies (builds are deterministic)."""

    def __init__(self, meta_path) -> None:
        self.meta_path = meta_path
        self._cache: dict[tuple[str, bool, bool], torch.nn.Module] = {}

    def __call__(self, variant: str = "small_224", training: bool = False, backbone: bool = True):
        key = (variant, training, backbone)
        if key not in self._cache:
            self._cache[key] = build_model(load_experiment("lorat", variant), training=training,
                                           backbone_weights=self.meta_path if backbone else None)
        return copy.deepcopy(self._cache[key])


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These tests run a dozen small forwards; one intra-op thread keeps them fast and steady when the two CPU
    cores are shared with other work (two spinning threads then slow each forward several times over)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    meta_path, _ = write_small_meta_checkpoint(folder)
    builds = Builds(meta_path)
    cfg = load_experiment("lorat", "small_224")
    source = builds(training=True)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # move every trainable tensor away from its (seeded, reproducible) initial value
        for p in source.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    inputs = _inputs(cfg)
    return {"folder": folder, "builds": builds, "cfg": cfg, "source": source, "inputs": inputs,
            "source_out": _run(source, inputs)}


def _official_file(env, name: str, alpha: int = 64, rslora: bool = False, fmt: str = "safetensors"):
    state = official_trainable_state(env["source"])
    state["lora_alpha"] = torch.tensor(alpha)
    state["use_rslora"] = torch.tensor(rslora)
    path = env["folder"] / name
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def test_perturbed_source_differs_from_fresh_build(env):
    """Guards the equality checks below: a fresh build alone would not reproduce the source's outputs."""
    fresh = _run(env["builds"](training=True), env["inputs"])
    assert not torch.allclose(fresh["score_map"], env["source_out"]["score_map"], atol=1e-3)


@pytest.mark.parametrize("name,fmt", [("official.bin", "safetensors"), ("official.pth", "pickle")])
def test_official_release_into_training_and_inference_models(env, name, fmt):
    path = _official_file(env, name, fmt=fmt)
    state = load_file(str(path)) if fmt == "safetensors" else torch.load(path)
    assert len(state) == 12 * 12 + 12 + 1 + 2
    assert state["lora_alpha"].dtype == torch.int64 and state["use_rslora"].dtype == torch.bool

    training = env["builds"](training=True)
    report = load_checkpoint(training, path, backbone_weights=env["builds"].meta_path)
    assert len(report.loaded) == 157
    _assert_outputs(_run(training, env["inputs"]), env["source_out"])

    inference = env["builds"](training=False)
    report = load_checkpoint(inference, path, backbone_weights=env["builds"].meta_path)
    assert report.lora_scaling == 1.0 and len(report.merged_lora) == S_DEPTH * 6
    assert not any(".lora" in k for k in inference.state_dict())
    _assert_outputs(_run(inference, env["inputs"]), env["source_out"], atol=1e-5)


@pytest.mark.parametrize("alpha,rslora,scaling", [(128, False, 2.0), (128, True, 16.0)])
def test_lora_alpha_in_file_sets_merge_scaling(env, alpha, rslora, scaling):
    path = _official_file(env, f"alpha{alpha}_{rslora}.bin", alpha=alpha, rslora=rslora)
    base = env["builds"](training=False)  # backbone weights from the Meta file, no adapters
    inference = env["builds"](training=False)
    report = load_checkpoint(inference, path, backbone_weights=env["builds"].meta_path)
    assert report.lora_scaling == scaling  # alpha / r = 128 / 64, rsLoRA: alpha / sqrt(r) = 128 / 8
    src = env["source"].blocks[2]
    w_qkv = base.blocks[2].attn.qkv.weight
    got = inference.blocks[2].attn.qkv.weight
    for j, slot in enumerate("qkv"):
        adapter = getattr(src.attn.qkv, f"lora_{slot}")
        rows = slice(j * S_DIM, (j + 1) * S_DIM)
        torch.testing.assert_close(got[rows], w_qkv[rows] + scaling * adapter.B @ adapter.A, atol=1e-5, rtol=0)
    fc2 = src.mlp.fc2.lora
    torch.testing.assert_close(inference.blocks[2].mlp.fc2.weight,
                               base.blocks[2].mlp.fc2.weight + scaling * fc2.B @ fc2.A, atol=1e-5, rtol=0)
    assert torch.equal(inference.blocks[2].attn.qkv.bias, base.blocks[2].attn.qkv.bias)  # biases untouched
    # The training build keeps the config's scaling (alpha = r) and ignores the file's alpha, as upstream's
    # training model does (its LoRA layers fix their scaling when they are built).
    training = env["builds"](training=True)
    assert load_checkpoint(training, path, backbone_weights=env["builds"].meta_path).lora_scaling is None
    _assert_outputs(_run(training, env["inputs"]), env["source_out"])


def test_official_release_needs_backbone_weights(env):
    path = _official_file(env, "needs_backbone.bin")
    with pytest.raises(CheckpointError, match="backbone_weights") as info:
        load_checkpoint(env["builds"](training=False, backbone=False), path)
    assert str(path) in str(info.value)


def test_save_official_checkpoint_round_trip(env):
    path = save_official_checkpoint(env["source"], env["folder"] / "saved.bin", lora_alpha=64, use_rslora=False,
                                    swiglu=False)
    state = load_file(str(path))  # safetensors despite the .bin suffix, as upstream writes it
    assert len(state) == 159  # 12 blocks x 12 adapter tensors + 12 head tensors + token_type_embed + 2 scalars
    expected = official_trainable_state(env["source"])
    assert set(state) == set(expected) | {"lora_alpha", "use_rslora"}
    for key in ("blocks.0.attn.qkv.q.lora.A", "blocks.11.attn.qkv.v.lora.B", "blocks.5.mlp.fc1.lora.B",
                "blocks.3.attn.proj.lora.A", "head.reg_mlp.layers.2.bias", "token_type_embed"):
        assert torch.equal(state[key], expected[key]), key
    assert state["blocks.5.mlp.fc1.lora.B"].shape == (1536, 64)
    assert state["lora_alpha"].dtype == torch.int64 and state["lora_alpha"].item() == 64
    assert state["use_rslora"].dtype == torch.bool and not state["use_rslora"].item()

    training = env["builds"](training=True)
    load_checkpoint(training, path, backbone_weights=env["builds"].meta_path)
    _assert_outputs(_run(training, env["inputs"]), env["source_out"])
    inference = env["builds"](training=False)
    load_checkpoint(inference, path, backbone_weights=env["builds"].meta_path)
    _assert_outputs(_run(inference, env["inputs"]), env["source_out"], atol=1e-5)


def test_save_official_checkpoint_giant_names():
    with torch.device("meta"):
        model = build_model(load_experiment("lorat", "giant_224"), training=True)
    names = {k for k, p in model.named_parameters() if p.requires_grad}
    official = {official_key(k, swiglu=True) for k in names}
    assert "blocks.39.mlp.w12.lora.B" in official and "blocks.0.mlp.w3.lora.A" in official
    assert "blocks.7.attn.qkv.k.lora.A" in official and not any(".fc1." in k or ".fc2." in k for k in official)


@pytest.fixture(scope="module")
def merged(env):
    """The source merged into plain linears: what the unofficial pytracking port ships as a state dict."""
    return merge_for_inference(copy.deepcopy(env["source"]))


@pytest.mark.parametrize("layout", ["plain", "net_module"])
def test_full_merged_state_dict_into_fresh_inference_model(env, merged, layout):
    state = merged.state_dict()
    path = env["folder"] / f"port_{layout}.pth.tar"
    if layout == "plain":
        torch.save(state, path)
    else:
        torch.save({"net": {f"module.{k}": v for k, v in state.items()}, "epoch": 300, "net_type": "LoRAT"}, path)
    model = env["builds"](training=False, backbone=False)  # random backbone: everything must come from the file
    report = load_checkpoint(model, path)
    assert set(report.sources) == set(model.state_dict()) and set(report.sources.values()) == {str(path)}
    assert report.merged_lora == [] and report.initialised == [] and report.lora_scaling is None
    reference = _run(merged, env["inputs"])
    _assert_outputs(reference, env["source_out"], atol=1e-5)
    _assert_outputs(_run(model, env["inputs"]), reference)


class PickledSettings:
    """Stands for the pytracking `Settings`/`NetConstructor` objects that pytracking checkpoints pickle."""


def test_checkpoint_pickling_python_objects_is_refused_with_file_name(env, merged):
    """Files are read with weights_only=True: a checkpoint that pickles arbitrary objects is not executed."""
    path = env["folder"] / "pytracking_with_settings.pth.tar"
    torch.save({"net": merged.state_dict(), "epoch": 3, "settings": PickledSettings()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(env["builds"](training=False, backbone=False), path)
    assert str(path) in str(info.value)


def test_full_merged_state_dict_into_training_model(env, merged):
    path = env["folder"] / "port_for_training.pth"
    torch.save(merged.state_dict(), path)
    model = env["builds"](training=True, backbone=False)
    fresh_adapter = model.blocks[3].mlp.fc1.lora.A.clone()
    report = load_checkpoint(model, path)
    # The file has no adapters at all: the new adapters (12 blocks x 6 adapters x A, B) keep their initialisation.
    assert len(report.initialised) == S_DEPTH * 12 and "blocks.3.mlp.fc1.lora.A" in report.initialised
    assert torch.equal(model.blocks[3].mlp.fc1.lora.A, fresh_adapter)
    for i in (0, 11):
        src, dst = merged.blocks[i], model.blocks[i]
        assert torch.equal(dst.attn.qkv.linear.weight, src.attn.qkv.weight)
        assert torch.equal(dst.attn.proj.linear.bias, src.attn.proj.bias)
        assert torch.equal(dst.mlp.fc1.linear.weight, src.mlp.fc1.weight)
        assert torch.equal(dst.mlp.fc2.linear.weight, src.mlp.fc2.weight)
        assert torch.equal(dst.ls2.gamma, src.ls2.gamma)
    assert torch.equal(model.pos_embed, merged.pos_embed) and torch.equal(model.norm.weight, merged.norm.weight)
    assert torch.equal(model.head.cls_mlp.layers[0].weight, merged.head.cls_mlp.layers[0].weight)


def test_export_round_trip_carries_config(env, merged):
    path = export_inference_checkpoint(merged, env["cfg"], env["folder"] / "export.pth")
    payload = torch.load(path, weights_only=False)
    assert payload["config"] == env["cfg"].to_dict()
    assert ExperimentConfig.from_dict(payload["config"]) == env["cfg"]
    model = env["builds"](training=False, backbone=False)
    load_checkpoint(model, path)
    _assert_outputs(_run(model, env["inputs"]), _run(merged, env["inputs"]))
    with pytest.raises(ValueError, match="Merge the adapters"):
        export_inference_checkpoint(env["source"], env["cfg"], env["folder"] / "unmerged.pth")


# ViT-S backbone tensors per block: norm1, norm2 (w, b), qkv, proj, fc1, fc2 (w, b), ls1, ls2 = 14; outside the
# blocks: patch_embed conv (w, b), pos_embed, final norm (w, b) = 5. LoRAT's own: token_type_embed + 12 head tensors.
BACKBONE_TENSORS = S_DEPTH * 14 + 5
OWN_TENSORS = 1 + len(HEAD_KEYS)


def test_missing_block_is_an_error_naming_its_keys(env, merged):
    """Issue 9 case 1: a full file with every blocks.3.* key removed used to load, leaving block 3 random."""
    path = env["folder"] / "no_block_3.pth"
    torch.save({k: v for k, v in merged.state_dict().items() if not k.startswith("blocks.3.")}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(env["builds"](training=False, backbone=False), path)
    message = str(info.value)
    assert str(path) in message and "missing 14 keys" in message
    assert "blocks.3.{attn.proj.bias, attn.proj.weight, attn.qkv.bias, attn.qkv.weight" in message
    assert "blocks.2" not in message and "blocks.4" not in message


def test_missing_adapters_of_one_block_are_an_error(env):
    """An official file lacking block 3's adapters must not leave them at their random initialisation."""
    state = {k: v for k, v in official_trainable_state(env["source"]).items() if not k.startswith("blocks.3.")}
    path = env["folder"] / "official_no_block_3.bin"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(env["builds"](training=True), path, backbone_weights=env["builds"].meta_path)
    message = str(info.value)
    assert str(path) in message and "missing 12 keys" in message and "blocks.3.{attn.proj.lora.A" in message


@pytest.mark.parametrize("training", [False, True])
def test_report_names_the_backbone_file_for_the_backbone_tensors(env, training):
    path = _official_file(env, f"official_sources_{training}.bin")
    meta = env["builds"].meta_path
    model = env["builds"](training=training)
    report = load_checkpoint(model, path, backbone_weights=meta)
    assert set(report.sources) == set(model.state_dict())
    from_meta = {k for k, source in report.sources.items() if source == str(meta)}
    from_file = {k for k, source in report.sources.items() if source == str(path)}
    assert len(from_meta) == BACKBONE_TENSORS
    assert len(from_file) == (157 if training else OWN_TENSORS)  # training: adapters load as adapters
    assert {"pos_embed", "patch_embed.proj.weight", "norm.bias", "blocks.11.ls2.gamma"} <= from_meta
    assert ("blocks.3.attn.qkv.linear.weight" if training else "blocks.3.attn.qkv.weight") in from_meta
    assert {"token_type_embed", "head.reg_mlp.layers.2.bias"} <= from_file
    assert report.summary() == (f"loaded {len(from_file)} tensors from {path}; {BACKBONE_TENSORS} from backbone {meta}"
                                + ("" if training else f"; {S_DEPTH * 6} LoRA updates merged (scaling 1)"))


def test_phase_one_file_then_lora_file(env, tmp_path):
    """Two phases without a side channel: the second call names the first file as the backbone's source."""
    phase1 = tmp_path / "phase1.pth"
    torch.save(env["builds"](training=False).state_dict(), phase1)  # full file: Meta backbone + a fresh head
    official = _official_file(env, "phase2.bin")
    model = env["builds"](training=False, backbone=False)
    load_checkpoint(model, phase1)
    with pytest.raises(CheckpointError, match="backbone_weights"):  # the model does not remember phase 1
        load_checkpoint(model, official)
    report = load_checkpoint(model, official, backbone_weights=phase1)
    assert sum(source == str(phase1) for source in report.sources.values()) == BACKBONE_TENSORS
    _assert_outputs(_run(model, env["inputs"]), env["source_out"], atol=1e-5)


def test_unknown_key_is_named(env, merged):
    state = dict(merged.state_dict())
    state["head.box_mlp.layers.0.weight"] = torch.zeros(3, 3)
    path = env["folder"] / "unknown.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"head\.box_mlp\.layers\.0\.weight") as info:
        load_checkpoint(env["builds"](training=False, backbone=False), path)
    assert str(path) in str(info.value)


def test_378_checkpoint_into_224_model_lists_pos_embed(env):
    path = env["folder"] / "small_378.pth"
    torch.save(env["builds"]("small_378", training=False, backbone=False).state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(env["builds"](training=False, backbone=False), path)
    message = str(info.value)
    assert str(path) in message
    assert f"pos_embed: file (1, 729, {S_DIM}) vs model (1, 256, {S_DIM})" in message


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".safetensors"])
def test_truncated_file_names_the_file(env, merged, suffix):
    path = env["folder"] / f"truncated{suffix}"
    if suffix == ".pth":
        torch.save(merged.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in merged.state_dict().items()}, str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(env["builds"](training=False, backbone=False), path)
    assert str(path) in str(info.value)


def test_file_without_head_is_rejected(env, merged):
    path = env["folder"] / "no_head.pth"
    torch.save({k: v for k, v in merged.state_dict().items() if not k.startswith("head.")}, path)
    with pytest.raises(CheckpointError, match="head") as info:
        load_checkpoint(env["builds"](training=False, backbone=False), path)
    assert str(path) in str(info.value)


def test_missing_checkpoint_file(env):
    with pytest.raises(FileNotFoundError, match="nothing_here.bin"):
        load_checkpoint(env["builds"](training=False), env["folder"] / "nothing_here.bin")


def test_training_checkpoint_merges_with_the_alpha_of_its_config(env, tmp_path):
    """A trainer checkpoint (trainable keys + config) merged into an inference model: scaling = alpha / r from the
    recorded config (here r 64, alpha 32: 0.5), so the merged model reproduces the training model."""
    from dataclasses import replace

    from lib.models import trainable_state_dict
    from lib.train.trainer import CHECKPOINT_FORMAT

    cfg = env["cfg"]
    cfg = replace(cfg, model=replace(cfg.model, lora=replace(cfg.model.lora, alpha=32.0)))
    source = env["builds"](training=True)
    source.load_state_dict(env["source"].state_dict())
    for module in source.modules():
        if hasattr(module, "scaling"):
            module.scaling = 0.5
    path = tmp_path / "checkpoint_ep0001.pth"
    torch.save({"format": CHECKPOINT_FORMAT, "epoch": 1, "config": cfg.to_dict(),
                "model": trainable_state_dict(source)}, path)
    inference = env["builds"](training=False)
    report = load_checkpoint(inference, path, backbone_weights=env["builds"].meta_path)
    assert report.lora_scaling == 0.5
    expected = _run(source, env["inputs"])
    _assert_outputs(_run(inference, env["inputs"]), expected, atol=1e-5)
    assert not torch.allclose(expected["boxes"], env["source_out"]["boxes"], atol=1e-3)  # alpha really matters
