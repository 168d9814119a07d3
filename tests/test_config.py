"""Experiment configs: strict keys and types with errors naming key and file, inheritance, immutability, and the
shipped YAMLs holding upstream's per-variant values (upstream trackit/LoRAT: config/LoRAT/run.yaml,
config/LoRAT/<variant>/config.yaml and config/LoRAT/_mixin/*.yaml)."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from lib.config import EXPERIMENTS_DIR, ConfigError, ExperimentConfig, load_experiment

SHIPPED = sorted(p.stem for p in (EXPERIMENTS_DIR / "lorat").glob("[!_]*.yaml"))
UPSTREAM_VARIANTS = sorted(f"{s}_{r}{m}" for s in ("small", "base", "large", "giant") for r in ("224", "378")
                           for m in ("", "_fft", "_got10k"))
BACKBONES = {"small": "dinov2_vits14", "base": "dinov2_vitb14", "large": "dinov2_vitl14", "giant": "dinov2_vitg14"}
DROP_PATH = {"small": 0.0, "base": 0.0, "large": 0.1, "giant": 0.4}
FFT_LAYER_DECAY = {"small": 0.7, "base": 0.7, "large": 0.8, "giant": 0.9}
FULL_DATA = ("lasot_train", "got10k_vottrain", "trackingnet_train", "coco2017_train")


@pytest.fixture
def experiments(tmp_path: Path) -> Path:
    """A private experiments folder holding a copy of the shipped base recipe, for the error cases."""
    (tmp_path / "lorat").mkdir()
    shutil.copy(EXPERIMENTS_DIR / "lorat" / "_base.yaml", tmp_path / "lorat" / "_base.yaml")
    return tmp_path


def _write(experiments: Path, name: str, text: str) -> Path:
    path = experiments / "lorat" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_child_overrides_parent(experiments):
    _write(experiments, "mine", "inherit: _base.yaml\nmodel: {backbone: dinov2_vits14}\ntrain: {epochs: 3}\n")
    cfg = load_experiment("lorat", "mine", experiments_dir=experiments)
    assert cfg.name == "mine" and cfg.script == "lorat"
    assert cfg.model.backbone == "dinov2_vits14" and cfg.train.epochs == 3
    assert cfg.model.search_size == 224 and cfg.train.batch_size == 128  # deep merge keeps the parent's values


def test_unknown_key_names_dotted_key_and_file(experiments):
    path = _write(experiments, "typo", "inherit: _base.yaml\nmodel: {backbon: dinov2_vits14}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment("lorat", "typo", experiments_dir=experiments)
    assert "'model.backbon'" in str(info.value) and str(path.resolve()) in str(info.value)


def test_unknown_key_in_parent_names_parent_file(experiments):
    parent = _write(experiments, "_parent", "inherit: _base.yaml\ntrain: {epoch: 3}\n")
    child = _write(experiments, "child", "inherit: _parent.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_experiment("lorat", "child", experiments_dir=experiments)
    message = str(info.value)
    assert "'train.epoch'" in message and str(parent.resolve()) in message
    assert str(child.resolve()) not in message


def test_wrong_type_names_key_and_file(experiments):
    path = _write(experiments, "wrong", 'inherit: _base.yaml\ntrain: {epochs: "ten"}\n')
    with pytest.raises(ConfigError) as info:
        load_experiment("lorat", "wrong", experiments_dir=experiments)
    assert "'train.epochs'" in str(info.value) and "ten" in str(info.value)
    assert path.name in str(info.value)


def test_bool_is_not_accepted_as_number(experiments):
    _write(experiments, "boolish", "inherit: _base.yaml\ntrain: {lr: true}\n")
    with pytest.raises(ConfigError, match=r"'train\.lr'"):
        load_experiment("lorat", "boolish", experiments_dir=experiments)


def test_unknown_key_inside_list_entry(experiments):
    path = _write(experiments, "listy", "inherit: _base.yaml\ndata:\n  train:\n    - {name: lasot_train, wieght: 2}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment("lorat", "listy", experiments_dir=experiments)
    assert "'data.train[0].wieght'" in str(info.value) and str(path.resolve()) in str(info.value)


def test_missing_config_lists_available(experiments):
    _write(experiments, "alpha", "inherit: _base.yaml\n")
    _write(experiments, "beta", "inherit: _base.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_experiment("lorat", "gamma", experiments_dir=experiments)
    message = str(info.value)
    assert "gamma.yaml" in message and "alpha, beta" in message and "_base" not in message


def test_missing_parent_and_cycle(experiments):
    _write(experiments, "orphan", "inherit: _nowhere.yaml\n")
    with pytest.raises(ConfigError, match="_nowhere.yaml"):
        load_experiment("lorat", "orphan", experiments_dir=experiments)
    _write(experiments, "a", "inherit: b.yaml\n")
    _write(experiments, "b", "inherit: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_experiment("lorat", "a", experiments_dir=experiments)


def test_configs_are_frozen():
    cfg = load_experiment("lorat", "small_224")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = None
    assert isinstance(cfg.data.train, tuple)


def test_every_variant_is_shipped():
    assert set(UPSTREAM_VARIANTS) <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(name):
    cfg = load_experiment("lorat", name)
    assert cfg.name == name and ExperimentConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", UPSTREAM_VARIANTS)
def test_upstream_variant_values(name):
    cfg = load_experiment("lorat", name)
    size, res = name.split("_")[:2]
    model, data, train, test = cfg.model, cfg.data, cfg.train, cfg.test
    assert model.backbone == BACKBONES[size] and model.drop_path == DROP_PATH[size]
    big = res == "378"
    assert (model.template_size, model.search_size) == ((196, 378) if big else (112, 224))
    assert (model.template_feat_size, model.search_feat_size) == ((14, 27) if big else (8, 16))
    assert data.search_area_factor == test.search_area_factor == (5.0 if big else 4.0)
    assert data.template_area_factor == test.template_area_factor == 2.0
    assert (data.scale_jitter, data.translation_jitter, data.min_object_size, data.max_gap) == (0.25, 3.0, 10.0, 100)
    assert data.samples_per_epoch == 131072
    assert train.batch_size == 128 and train.lr == 1e-4 and train.weight_decay == 0.1
    assert train.warmup_epochs == 2 and train.seed == 42
    if name.endswith("_got10k"):
        assert train.epochs == 100 and [e.name for e in data.train] == ["got10k_train_full"]
    else:
        assert train.epochs == 170 and tuple(e.name for e in data.train) == FULL_DATA
        assert all(e.weight == 1.0 for e in data.train)
    if name.endswith("_fft"):
        assert model.lora is None and train.layer_decay == FFT_LAYER_DECAY[size] and train.grad_clip == 0.1
    else:
        lora = model.lora
        assert (lora.r, lora.alpha, lora.dropout, lora.use_rslora, lora.init) == (64, 64.0, 0.0, False, "bert")
        assert lora.scaling == 1.0 and train.layer_decay is None and train.grad_clip == 1.0


def test_to_dict_from_dict_round_trip():
    for name in ("base_378", "giant_224_fft", "small_224_got10k"):
        cfg = load_experiment("lorat", name)
        data = cfg.to_dict()
        assert data["model"]["lora"] == (None if name.endswith("_fft") else
                                         {"r": 64, "alpha": 64.0, "dropout": 0.0, "use_rslora": False, "init": "bert",
                                          "targets": ("q", "k", "v", "o", "mlp")})
        assert ExperimentConfig.from_dict(data) == cfg
    bad = load_experiment("lorat", "small_224").to_dict()
    bad["train"]["epoch"] = 1
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict(bad, source="checkpoint.pth")
    assert "'train.epoch'" in str(info.value) and "checkpoint.pth" in str(info.value)


DEMO_ALLOWED_BACKBONES = ("dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14", "vit_demo_p14",
                          "vit_demo_p14_synthetic", "vit_demo_p14_synthetic_init", "dinov2_reg4_vitb14",
                          "dinov2_reg4_vitl14", "vit_demo_p14_reg4",
                          "timm_dinov2_vitb14", "timm_mae_vitb16", "timm_clip_vitb16", "timm_dinov2_vitl14",
                          "timm_mae_vitl16", "timm_clip_vitl14", "timm_eva02_vitb14", "timm_eva02_vitl14")


@pytest.mark.parametrize("override,key,allowed", [
    ("train.amp=fp33", "train.amp", ("fp32", "fp16", "bf16")),
    ("test.amp=none", "test.amp", ("fp32", "fp16", "bf16")),  # one precision vocabulary: fp32 means no autocast
    ("model.backbone=vit_dem0", "model.backbone", DEMO_ALLOWED_BACKBONES),
    ("model.lora.init=kaiming", "model.lora.init", ("bert", "lora", "gaussian")),
])
def test_names_are_checked_by_overrides(override, key, allowed):
    """Issue 9 case 8: a misspelled name fails when the override is applied, not after the model is built."""
    from lib.config import apply_overrides

    with pytest.raises(ConfigError) as info:
        apply_overrides(load_experiment("lorat", "demo_lora"), [override])
    message = str(info.value)
    assert f"'{key}'" in message and "command-line overrides" in message
    assert f"one of {', '.join(allowed)}, got '{override.split('=')[1]}'" in message


@pytest.mark.parametrize("text,key,value", [
    ("train: {amp: fp33}", "train.amp", "fp33"),
    ("model: {backbone: vit_dem0}", "model.backbone", "vit_dem0"),
    ("model: {lora: {init: kaiming}}", "model.lora.init", "kaiming"),
])
def test_names_are_checked_when_the_yaml_loads(experiments, text, key, value):
    path = _write(experiments, "misspelled", f"inherit: _base.yaml\n{text}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment("lorat", "misspelled", experiments_dir=experiments)
    message = str(info.value)
    assert f"'{key}'" in message and str(path.resolve()) in message and f"got '{value}'" in message


def test_valid_names_and_lora_scaling():
    from lib.config import apply_overrides

    cfg = apply_overrides(load_experiment("lorat", "demo_lora"),
                          ["train.amp=bf16", "test.amp=fp32", "model.lora.init=gaussian", "model.lora.alpha=8",
                           "model.backbone=dinov2_vits14"])
    assert (cfg.train.amp, cfg.test.amp, cfg.model.lora.init, cfg.model.backbone) == \
        ("bf16", "fp32", "gaussian", "dinov2_vits14")
    assert cfg.model.lora.scaling == 0.5  # alpha / r = 8 / 16
    rs = apply_overrides(cfg, ["model.lora.use_rslora=true"])
    assert rs.model.lora.scaling == 2.0  # alpha / sqrt(r) = 8 / 4
