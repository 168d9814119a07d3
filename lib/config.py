"""Typed, frozen experiment configuration loaded from `experiments/<script>/<config>.yaml`.

A YAML file may start with `inherit: [a.yaml, b.yaml]` (paths relative to the file); parents are merged left to
right (dicts deep-merged, everything else replaced), then the file's own values. Every file is checked against
the schema on its own, so a misspelled key is reported together with the file that contains it.

Values that name something (a backbone, a precision, a LoRA init) are annotated `Annotated[str, OneOf(...)]` with
the table that defines the names, so a typo fails when the YAML (or a `--set` override) is read, naming the key,
the file and the allowed values, instead of deep inside model building.
"""
from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"


class ConfigError(ValueError):
    """A YAML experiment file is malformed, has an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class OneOf:
    """Type marker: the value must be a key of the mapping at `"module:NAME"` (imported when a value is checked,
    so this module does not import the model code)."""

    table: str

    def choices(self) -> tuple[str, ...]:
        module, _, name = self.table.partition(":")
        return tuple(getattr(importlib.import_module(module), name))


Precision = Annotated[str, OneOf("lib.utils.precision:AUTOCAST_DTYPES")]  # fp32 (no autocast) | fp16 | bf16


@dataclass(frozen=True)
class LoRAConfig:
    r: int
    alpha: float
    dropout: float
    use_rslora: bool
    init: Annotated[str, OneOf("lib.models.lora:LORA_INITS")]  # "bert" (upstream default) | "lora" | "gaussian"
    # Which linears get adapters (paper Table 4 placements): q, k, v slots of the fused qkv, o (attention output
    # projection), mlp (both MLP linears). LoRAT: all of them.
    targets: tuple[Annotated[str, OneOf("lib.models.lora:LORA_PLACEMENTS")], ...] = ("q", "k", "v", "o", "mlp")

    def __post_init__(self) -> None:
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"lora.targets must name each placement once and at least one, got {self.targets}")

    @property
    def scaling(self) -> float:
        from lib.models.lora import lora_scaling  # the one formula; lib.models imports this module

        return lora_scaling(self.alpha, self.r, self.use_rslora)


@dataclass(frozen=True)
class PEFTConfig:
    """A parameter-efficient method other than LoRA (paper Table 4; lib/models/peft.py)."""

    method: Annotated[str, OneOf("lib.models.peft:PEFT_METHODS")]  # adapter | vpt | ia3
    adapter_reduction: int = 8  # adapter bottleneck width = embed_dim // adapter_reduction
    num_prompts: int = 5  # VPT-deep: learned prompt tokens prepended in every block


@dataclass(frozen=True)
class LoRATv2Config:
    """LoRATv2's streams (docs/loratv2.md). The model sees [registers + template | search stream 0 | ...]; phase 1
    has one search stream (`model.search_size`), phase 2 puts a dynamic-reference stream of `reference_size` in
    front of it. The streams trained follow from the phase: all in phase 1, only the last in phase 2 (the others
    are the frozen, merged phase-1 experts, loaded from `--init_checkpoint`)."""

    phase: int  # 1 | 2
    reference_size: int = 224  # phase 2: the dynamic-reference crop (pixels, square)
    reference_area_factor: float = 4.0  # phase 2: its SiamFC area factor, in training and tracking
    update_threshold: float = 0.9  # phase 2 tracking: re-encode the reference when the confidence is above this

    def __post_init__(self) -> None:
        if self.phase not in (1, 2):
            raise ConfigError(f"model.loratv2.phase must be 1 or 2, got {self.phase!r}")


@dataclass(frozen=True)
class ModelConfig:
    backbone: Annotated[str, OneOf("lib.models.backbone:VIT_SPECS")]
    drop_path: float
    template_size: int  # pixels, square
    search_size: int
    lora: Optional[LoRAConfig]  # None (and no `peft`): full fine-tuning
    peft: Optional[PEFTConfig] = None  # another PEFT method instead of LoRA (then `lora` must be null)
    train_final_norm: bool = False  # PEFT runs: the backbone's final LayerNorm trains too (Table 6 ablations)
    head: Annotated[str, OneOf("lib.models.head:HEADS")] = "mlp"  # mlp (LoRAT) | conv | ostrack (Table 6)
    attention: Annotated[str, OneOf("lib.models.lorat:ATTENTION_MASKS")] = "full"  # full | smam (Table 6)
    # Table 5 input embedding: lorat | sinusoidal | separate | shared_types | separate_types_fg
    embedding: Annotated[str, OneOf("lib.models.lorat:INPUT_EMBEDDINGS")] = "lorat"
    loratv2: Optional[LoRATv2Config] = None  # experiments/loratv2 only: its stream layout

    def __post_init__(self) -> None:
        if self.lora is not None and self.peft is not None:
            raise ConfigError(f"model.lora and model.peft ({self.peft.method}) are alternatives: set lora: null "
                              f"to use {self.peft.method}")
        if self.attention != "full" and self.peft is not None and self.peft.method == "vpt":
            raise ConfigError("model.attention masks [template; search] tokens; VPT prompts change that sequence: "
                              "use attention: full with VPT")

    @property
    def patch_size(self) -> int:
        from lib.models.backbone import VIT_SPECS  # the backbone table; lib.models imports this module

        return VIT_SPECS[self.backbone].patch_size

    @property
    def pixel_stats(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """RGB mean and std (pixels in [0, 1]) the backbone was pretrained with: ImageNet's, or OpenAI CLIP's for
        the CLIP and EVA-02 backbones. Training and tracking normalise crops with these."""
        from lib.models.backbone import VIT_SPECS
        from lib.utils.image import NORMALIZATIONS

        return NORMALIZATIONS[VIT_SPECS[self.backbone].normalization]

    @property
    def template_feat_size(self) -> int:
        return self.template_size // self.patch_size

    @property
    def search_feat_size(self) -> int:
        return self.search_size // self.patch_size

    @property
    def search_sizes(self) -> tuple[int, ...]:
        """Pixel size of every search stream in model order (LoRATv2 phase 2: reference, then search)."""
        if self.loratv2 is not None and self.loratv2.phase == 2:
            return (self.loratv2.reference_size, self.search_size)
        return (self.search_size,)


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset by `name`, or your own folder: `name` (any label), `format` and `root` together (plus
    its packed copy `lmdb` for data.use_lmdb)."""

    name: str  # key of lib.train.dataset.TRAIN_DATASETS, or the label of a custom dataset
    weight: float = 1.0
    format: Optional[Annotated[str, OneOf("lib.datasets:FORMATS")]] = None  # on-disk layout of a custom dataset
    root: Optional[str] = None  # folder of a custom dataset
    lmdb: Optional[str] = None  # LMDB of a custom dataset (tracking/build_lmdb.py), read when data.use_lmdb is set


@dataclass(frozen=True)
class DataConfig:
    train: tuple[DatasetEntry, ...]
    val: tuple[DatasetEntry, ...]
    samples_per_epoch: int  # global, all ranks together
    val_samples: int
    max_gap: int
    template_area_factor: float
    search_area_factor: float
    scale_jitter: float
    translation_jitter: float
    min_object_size: float
    num_workers: int
    use_lmdb: bool


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int  # global batch, split evenly across ranks
    grad_accum_steps: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    warmup_lr: float
    min_lr: float
    layer_decay: Optional[float]  # full fine-tuning baseline only
    grad_clip: float
    amp: Precision  # on any device; fp16 adds a gradient scaler
    compile: bool
    save_every: int  # epochs
    val_every: int  # epochs; needs data.val
    seed: int
    # BCE target at positive cells: the IoU of the predicted box (LoRAT), or 1 (upstream's conv-head ablations set
    # iou_aware_classification_score: false)
    iou_aware_target: bool = True


@dataclass(frozen=True)
class TestConfig:
    template_area_factor: float
    search_area_factor: float
    window_penalty: float
    min_box_size: float
    amp: Precision  # on GPU


@dataclass(frozen=True)
class ExperimentConfig:
    script: str
    name: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    test: TestConfig
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for checkpoints and logs); `from_dict` rebuilds the same config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "ExperimentConfig":
        _check_keys(cls, data, source, "")
        return _build(cls, data, source, "")


def load_experiment(script: str, config: str, experiments_dir: Path | str | None = None) -> ExperimentConfig:
    """Load `experiments/<script>/<config>.yaml` (with inheritance) into an immutable `ExperimentConfig`."""
    root = Path(experiments_dir) if experiments_dir is not None else EXPERIMENTS_DIR
    path = root / script / f"{config}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (root / script).glob("[!_]*.yaml")) if (root / script).is_dir() else []
        raise ConfigError(f"No experiment config {path}. Available for '{script}': {', '.join(available) or 'none'}")
    merged = _load_tree(path, stack=())
    merged.pop("inherit", None)
    body = {"script": script, "name": config, **merged}
    return _build(ExperimentConfig, body, str(path), "")


def _load_tree(path: Path, stack: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in stack:
        raise ConfigError(f"Inheritance cycle: {' -> '.join(str(p) for p in (*stack, path))}")
    if not path.is_file():
        raise ConfigError(f"{stack[-1] if stack else path}: inherited file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    parents = raw.pop("inherit", [])
    parents = [parents] if isinstance(parents, str) else parents
    _check_keys(ExperimentConfig, raw, str(path), "", top_level=True)
    merged: dict[str, Any] = {}
    for parent in parents:
        merged = _deep_merge(merged, _load_tree(path.parent / parent, (*stack, path)))
    return _deep_merge(merged, raw)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _one_of(tp: Any) -> OneOf | None:
    """The `OneOf` marker of an `Annotated[...]` hint, else None."""
    if typing.get_origin(tp) is Annotated:
        return next((m for m in tp.__metadata__ if isinstance(m, OneOf)), None)
    return None


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside `tp` (also through Optional[...]), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def _check_keys(cls: type, raw: dict[str, Any], source: str, prefix: str, top_level: bool = False) -> None:
    hints = typing.get_type_hints(cls, include_extras=True)
    allowed = {f.name for f in dataclasses.fields(cls)}
    if top_level:
        allowed -= {"script", "name"}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in allowed:
            raise ConfigError(f"{source}: unknown key '{dotted}' (allowed here: {', '.join(sorted(allowed))})")
        sub = _dataclass_of(hints[key])
        if sub is not None and isinstance(value, dict):
            _check_keys(sub, value, source, f"{dotted}.")
        else:  # a leaf or a list: check its type here, so the error names the file that holds the value
            _convert(hints[key], value, source, dotted)


def _build(cls: type, raw: dict[str, Any], source: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {raw!r}")
    _check_keys(cls, raw, source, prefix)
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {key: _convert(hints[key], value, source, f"{prefix}{key}") for key, value in raw.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ConfigError) as e:  # a required field is missing, or values that contradict each other
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'}: {e}") from e


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    one_of = _one_of(tp)
    if one_of is not None:
        value = _convert(typing.get_args(tp)[0], value, source, key)
        choices = one_of.choices()
        if value not in choices:
            raise ConfigError(f"{source}: '{key}' must be one of {', '.join(choices)}, got {value!r}")
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, source, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, source, f"{key}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        (item_type, _) = typing.get_args(tp)
        return tuple(_convert(item_type, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{source}: '{key}' must be {getattr(tp, '__name__', tp)}, got {value!r}")


def apply_overrides(cfg: ExperimentConfig, overrides: list[str] | tuple[str, ...]) -> ExperimentConfig:
    """A copy of `cfg` with `section.key=value` overrides (values parsed as YAML, checked like a YAML file).

    Example: `apply_overrides(cfg, ["train.epochs=3", "data.num_workers=0", "model.lora=null"])`.
    """
    data = cfg.to_dict()
    for item in overrides:
        dotted, sep, text = item.partition("=")
        if not sep or not dotted:
            raise ConfigError(f"override '{item}': expected section.key=value")
        *parents, leaf = dotted.strip().split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override '{item}': '{part}' is not a config section")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"override '{item}': unknown key '{dotted}'")
        node[leaf] = yaml.safe_load(text)
    return ExperimentConfig.from_dict(data, source="command-line overrides")
