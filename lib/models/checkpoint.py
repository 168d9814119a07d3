"""Reading every LoRAT checkpoint layout into either the training (adapter) or the inference (merged) model.

Accepted files:
* official releases: trainable keys only (LoRA A/B per q/k/v/proj/fc1/fc2, ViT-g's w12/w3, or EVA-02's
  q_proj/k_proj/v_proj/proj/fc1_g/fc1_x/fc2 under timm's names as upstream's timm variant keeps them;
  token_type_embed, head, optional `lora_alpha`/`use_rslora`); safetensors even when the file ends in `.bin`, torch pickle otherwise
  (upstream trackit/LoRAT: trackit/models/__init__.py reads them; names from trackit/models/methods/LoRAT/lorat.py
  and modules/lora/, https://github.com/LitingLin/LoRAT);
* full merged state dicts (the unofficial pytracking port; plain or under `net`, possibly `module.`-prefixed);
* this project's training checkpoints and inference exports (state dict under `model`).

Everything is first brought to canonical names (timm's merged names, adapters named as lib/models/lora.py names
them), then copied into the model: adapters load into adapters, or are merged with lora.py's `W += scaling * B @ A`
(float32) when the model has plain linears (IA3 scale vectors likewise fold into theirs, lib/models/peft.py). Loading is strict: every tensor of the model must come from the file,
from the backbone file the caller names, or (adapters only) stay at their initialisation when the file has none.
"""
from __future__ import annotations

import dataclasses
import pickle
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lib.models.lora import (ALL_LORA_TARGETS, QKV_SLOTS, QKV_TARGET, adapter_name, lora_delta, lora_scaling,
                             merged_weight)
from lib.models.lorat import LoRAT
from lib.models.peft import IA3_FOLDS, IA3_KEY

REQUIRED_PREFIXES = ("token_type_embed", "head.")  # a tracker checkpoint always has these
SWIGLU_NAMES = {"mlp.fc1": "mlp.w12", "mlp.fc2": "mlp.w3"}  # ViT-g's linears as upstream names them


def alternatives(names) -> str:
    """A regex alternation matching exactly one of `names` (the key patterns are built from lora.py's names)."""
    return "|".join(re.escape(n) for n in names)


_TARGET, _SLOT = alternatives(ALL_LORA_TARGETS), alternatives(QKV_SLOTS)
_QKV, _PLAIN_ADAPTER = re.escape(QKV_TARGET), re.escape(adapter_name(None))
_SLOT_OF_ADAPTER = {adapter_name(None): None, **{adapter_name(slot): slot for slot in QKV_SLOTS}}
# A canonical adapter key: blocks.<i>.<target>.<adapter name>.<A|B>.
_LORA_KEY = re.compile(rf"^(?P<module>blocks\.\d+\.(?:{_TARGET}))\.(?P<adapter>{alternatives(_SLOT_OF_ADAPTER)})"
                       rf"\.(?P<m>[AB])$")
# Upstream nests q/k/v adapters under their slot (`attn.qkv.q.lora.A`); this project names them by adapter_name.
_OFFICIAL_QKV_ADAPTER = re.compile(rf"\.{_QKV}\.(?P<slot>{_SLOT})\.{_PLAIN_ADAPTER}\.")
_QKV_ADAPTER = re.compile(rf"\.{_QKV}\.(?P<adapter>{alternatives(adapter_name(s) for s in QKV_SLOTS)})\.")
_WRAPPED_LINEAR = re.compile(rf"\.({_TARGET})\.linear\.")
_SPLIT_QKV = re.compile(rf"^(?P<prefix>blocks\.\d+\.{_QKV})\.(?P<slot>{_SLOT})\.(?:linear\.)?(?P<p>weight|bias)$")


class CheckpointError(ValueError):
    """The checkpoint does not fit the model (unknown keys, shape mismatches, missing parts)."""


@dataclass(frozen=True)
class LoadReport:
    """What `load_checkpoint` did. `sources` maps every model key that was filled to the file it came from (the
    checkpoint, or the backbone file for the backbone tensors the checkpoint left to it); merged weights keep the
    source of their base weight and are listed in `merged_lora`."""

    path: str
    sources: dict[str, str]
    loaded: list[str]  # checkpoint keys (canonical names) copied into the model
    merged_lora: list[str]  # `<module>` or `<module>.<slot>` whose LoRA update was merged into the weight
    initialised: list[str]  # adapter keys the file had none of: they keep build_model's initialisation
    lora_scaling: float | None = None  # the merge factor, None when nothing was merged
    folded_ia3: list[str] = dataclasses.field(default_factory=list)  # linears an IA3 scale was folded into

    def summary(self) -> str:
        """One line for logs: how many tensors came from which file, and what was merged or left initialised."""
        counts = Counter(self.sources.values())
        parts = [f"{counts.pop(self.path, 0)} tensors from {self.path}"]
        parts += [f"{n} from backbone {source}" for source, n in counts.items()]
        if self.merged_lora:
            parts.append(f"{len(self.merged_lora)} LoRA updates merged (scaling {self.lora_scaling:g})")
        if self.folded_ia3:
            parts.append(f"{len(self.folded_ia3)} IA3 scales folded into their linears")
        if self.initialised:
            parts.append(f"{len(self.initialised)} adapter tensors at their initialisation (none in the file)")
        return "loaded " + "; ".join(parts)


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """The tensors of a checkpoint file (unwrapped from `model`/`net`/`state_dict` containers) and its extras."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    raw = _read_file(path)
    extras: dict[str, object] = {}
    if isinstance(raw, dict):
        for container in ("model", "net", "state_dict"):
            if isinstance(raw.get(container), dict):
                extras = {k: v for k, v in raw.items() if k != container}
                raw = raw[container]
                break
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: no state dict found (expected a mapping of tensors, possibly under "
                              f"'model', 'net' or 'state_dict')")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    for key in ("lora_alpha", "use_rslora"):
        if key in state:
            extras[key] = state.pop(key).item()
    config = extras.get("config")
    lora_cfg = config.get("model", {}).get("lora") if isinstance(config, dict) else None
    if isinstance(lora_cfg, dict):  # this project's training checkpoints record alpha in their config
        extras.setdefault("lora_alpha", lora_cfg["alpha"])
        extras.setdefault("use_rslora", lora_cfg["use_rslora"])
    return state, extras


def _read_file(path: Path) -> object:
    if path.suffix in (".safetensors", ".bin"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except SafetensorError:
            if path.suffix == ".safetensors":
                raise CheckpointError(f"{path}: corrupt safetensors file; re-download it") from None
    try:  # `.bin` that is a pickle after all, `.pth`, `.pth.tar`, `.pt`
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} cannot be read as plain tensors: it is corrupt, or it pickles Python objects (pytracking trainer "
            f"checkpoints store their settings object), which are not loaded for safety. If you trust the file, "
            f"re-save its weights: "
            f"torch.save(torch.load(PATH, weights_only=False)['net'], 'weights.pth')") from e
    except Exception as e:  # unpickling raises many types; all mean "not a readable checkpoint"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e


def canonical_key(key: str) -> str:
    """Official/port/training names -> this project's canonical names (timm merged names + adapter names)."""
    key = _OFFICIAL_QKV_ADAPTER.sub(lambda m: f".{QKV_TARGET}.{adapter_name(m['slot'])}.", key)
    for ours, upstream in SWIGLU_NAMES.items():
        key = key.replace(f".{upstream}.", f".{ours}.")
    return _WRAPPED_LINEAR.sub(r".\1.", key)


def official_key(key: str, swiglu: bool) -> str:
    """This project's training names -> the official release names (q/k/v adapters nested, ViT-g's w12/w3)."""
    key = _QKV_ADAPTER.sub(lambda m: f".{QKV_TARGET}.{_SLOT_OF_ADAPTER[m['adapter']]}.{adapter_name(None)}.", key)
    if swiglu:
        for ours, upstream in SWIGLU_NAMES.items():
            key = key.replace(f".{ours}.", f".{upstream}.")
    return key


def _canonical_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    split: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        key = canonical_key(key)
        m = _SPLIT_QKV.match(key)
        if m:  # upstream's training layout keeps q, k, v as three linears: fuse them back
            split.setdefault((m["prefix"], m["p"]), {})[m["slot"]] = value
        else:
            out[key] = value
    for (prefix, param), parts in split.items():
        if set(parts) != set(QKV_SLOTS):
            raise CheckpointError(f"{prefix}: split q/k/v {param} incomplete, has only {sorted(parts)}")
        out[f"{prefix}.{param}"] = torch.cat([parts[slot] for slot in QKV_SLOTS])
    return out


def _file_scaling(extras: dict[str, object], lora: dict[str, torch.Tensor]) -> float:
    """Upstream's merge factor: from the `lora_alpha` (and `use_rslora`) the file records, else 1.0."""
    if "lora_alpha" not in extras or not lora:
        return 1.0
    rank = next(v for k, v in lora.items() if k.endswith(".A")).shape[0]
    return lora_scaling(float(extras["lora_alpha"]), rank, bool(extras.get("use_rslora")))


def natural_order(key: str) -> list[object]:
    """Sort key that puts blocks.2 before blocks.10."""
    return [int(part) if part.isdigit() else part for part in key.split(".")]


def describe_keys(keys: set[str] | list[str], shown: int = 4) -> str:
    """Keys grouped by block (or top-level member), sorted, with at most `shown` names per group."""
    groups: dict[str, list[str]] = {}
    for key in sorted(keys, key=natural_order):
        parts = key.split(".")
        groups.setdefault(".".join(parts[:2]) if parts[0] == "blocks" else parts[0], []).append(key)
    described = []
    for group, members in groups.items():
        if members == [group]:
            described.append(group)
            continue
        names = [m.removeprefix(f"{group}.") for m in members]
        more = f", ... ({len(names)} keys)" if len(names) > shown else ""
        described.append(f"{group}.{{{', '.join(names[:shown])}{more}}}")
    return f"{len(keys)} keys: " + "; ".join(described)


def load_checkpoint(model: LoRAT, path: str | Path, backbone_weights: str | Path | None = None) -> LoadReport:
    """Load `path` into `model` (built by `build_model`) in place; raise `CheckpointError` on any mismatch.

    Every tensor of the model must be filled. A key the checkpoint does not hold is accepted only
    * for the backbone's own tensors (`LoRAT.backbone_state_keys`), when `backbone_weights` names the file they
      came from: the Meta DINOv2 file given to `build_model(..., backbone_weights=...)`, or a full checkpoint
      loaded into this model before. Two phases, e.g. a full stage-1 file and then a LoRA-only stage-2 file:
      `load_checkpoint(model, stage1)`, then `load_checkpoint(model, stage2, backbone_weights=stage1)`;
    * for the adapters of a training model, when the file holds no adapter at all (a full or merged base to
      fine-tune): they keep their initialisation and are listed in `LoadReport.initialised`.
    Anything else missing is an error listing the keys.
    """
    state, extras = read_state_dict(path)
    state = _canonical_state(state)
    target = model.state_dict()
    lora = {k: v for k, v in state.items() if _LORA_KEY.match(k)}
    ia3 = {k: v for k, v in state.items() if IA3_KEY.match(k) and k not in target}  # to fold into plain linears
    plain = {k: v for k, v in state.items() if k not in lora and k not in ia3}
    by_canonical = {canonical_key(k): k for k in target}
    model_adapters = {k for k in target if _LORA_KEY.match(k)}
    has_adapters = bool(model_adapters)

    unknown = [k for k in plain if k not in by_canonical]
    unknown += [k for k in ia3 if f"{IA3_KEY.match(k)['module']}.weight" not in by_canonical]
    if has_adapters:
        unknown += [k for k in lora if k not in target]
    else:
        unknown += [k for k in lora if f"{_LORA_KEY.match(k)['module']}.weight" not in by_canonical]
    if unknown:
        raise CheckpointError(f"{path}: keys the model does not have (wrong variant or not a LoRAT checkpoint): "
                              f"{sorted(unknown, key=natural_order)}")
    shapes = {**{k: tuple(target[by_canonical[k]].shape) for k in plain},
              **({k: tuple(target[k].shape) for k in lora} if has_adapters else {})}
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {s}" for k, s in shapes.items() if tuple(state[k].shape) != s]
    if wrong:
        raise CheckpointError(f"{path}: shape mismatches (wrong size variant or search size?): {wrong}")
    absent = [p for p in REQUIRED_PREFIXES  # those the model has (no token types in some Table 5 schemes)
              if any(k.startswith(p) for k in target) and not any(k.startswith(p) for k in plain)]
    if absent:
        raise CheckpointError(f"{path}: no {' / '.join(absent)} weights: this is not a LoRAT tracker checkpoint "
                              f"(backbone weights go to build_model(..., backbone_weights=...))")
    if not any(k.startswith("blocks.") for k in plain) and backbone_weights is None:
        raise CheckpointError(f"{path} holds only the trained LoRA/head weights; the frozen backbone must come from "
                              f"the pretrained DINOv2 file: build the model with backbone_weights=... "
                              f"(e.g. pretrained/dinov2_vitb14_pretrain.pth) and pass the same file to "
                              f"load_checkpoint(..., backbone_weights=...)")

    from_file = {by_canonical[k] for k in plain} | (set(lora) if has_adapters else set())
    initialised = sorted(model_adapters, key=natural_order) if has_adapters and not lora else []
    from_backbone = (model.backbone_state_keys() - from_file) if backbone_weights is not None else set()
    missing = set(target) - from_file - from_backbone - set(initialised)
    if missing:
        hint = "" if backbone_weights is not None else \
            " (if the backbone comes from a pretrained file, pass it as backbone_weights=...)"
        raise CheckpointError(f"{path} does not hold every tensor of the model; missing {describe_keys(missing)}"
                              f"{hint}")

    scaling = None if has_adapters or not lora else _file_scaling(extras, lora)
    with torch.no_grad():
        for key, value in plain.items():
            target[by_canonical[key]].copy_(value)
        if has_adapters:
            for key, value in lora.items():
                target[key].copy_(value)
        merged = [] if has_adapters else _merge_into(target, by_canonical, lora, scaling, path)
        folded = []
        for key, scale in ia3.items():  # after the base weights are in place
            m = IA3_KEY.match(key)
            try:
                IA3_FOLDS[m["kind"]](target[by_canonical[f"{m['module']}.weight"]],
                                     target.get(by_canonical.get(f"{m['module']}.bias", "")), scale)
            except RuntimeError as e:  # a scale vector of the wrong length
                raise CheckpointError(f"{path}: {key} {tuple(scale.shape)} does not fit {m['module']}: {e}") from e
            folded.append(m["module"])
    sources = {**{k: str(backbone_weights) for k in from_backbone}, **{k: str(path) for k in from_file}}
    return LoadReport(str(path), dict(sorted(sources.items(), key=lambda kv: natural_order(kv[0]))),
                      loaded=list(plain) + (list(lora) if has_adapters else []), merged_lora=merged,
                      initialised=initialised, lora_scaling=scaling, folded_ia3=sorted(folded, key=natural_order))


def _merge_into(target: dict[str, torch.Tensor], by_canonical: dict[str, str], lora: dict[str, torch.Tensor],
                scaling: float | None, path: str | Path) -> list[str]:
    """Merge each A/B pair into its (slice of the) plain weight; returns the merged `<module>[.<slot>]` names."""
    pairs: dict[tuple[str, str | None], dict[str, torch.Tensor]] = {}
    for key, value in lora.items():
        m = _LORA_KEY.match(key)
        pairs.setdefault((m["module"], _SLOT_OF_ADAPTER[m["adapter"]]), {})[m["m"]] = value
    merged = []
    for (module, slot), ab in sorted(pairs.items(), key=lambda kv: (natural_order(kv[0][0]), kv[0][1] or "")):
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"{path}: {module}: LoRA pair incomplete (has only {sorted(ab)})")
        weight = target[by_canonical[f"{module}.weight"]]
        if slot is not None:  # the slot's rows of the fused [q; k; v] weight
            rows = weight.shape[0] // len(QKV_SLOTS)
            weight = weight[QKV_SLOTS.index(slot) * rows:(QKV_SLOTS.index(slot) + 1) * rows]
        try:
            weight.copy_(merged_weight(weight, lora_delta(ab["A"], ab["B"], scaling)))
        except ValueError as e:
            raise CheckpointError(f"{path}: {module}: {e}") from e
        merged.append(f"{module}{'.' + slot if slot else ''}")
    return merged


def save_official_checkpoint(model: nn.Module, path: str | Path, lora_alpha: float, use_rslora: bool,
                             swiglu: bool) -> Path:
    """The trainable weights in the official release layout (safetensors, plus `lora_alpha`/`use_rslora`)."""
    from safetensors.torch import save

    from lib.utils.io import atomic_write_bytes

    state = {official_key(k, swiglu): p.detach().contiguous().cpu()
             for k, p in model.named_parameters() if p.requires_grad}
    state["lora_alpha"] = torch.tensor(int(lora_alpha) if float(lora_alpha).is_integer() else lora_alpha)
    state["use_rslora"] = torch.tensor(use_rslora)
    path = Path(path)
    atomic_write_bytes(path, save(state))
    return path
