"""Reading every LoRAT checkpoint layout into either the training (adapter) or the inference (merged) model.

Accepted files (upstream-lorat.md §2.4-§2.6, pytracking-conventions.md §2):
* official releases: trainable keys only (LoRA A/B per q/k/v/proj/fc1/fc2 or w12/w3, token_type_embed, head,
  optional `lora_alpha`/`use_rslora`); safetensors even when the file ends in `.bin`, torch pickle otherwise;
* full merged state dicts (the unofficial pytracking port; plain or under `net`, possibly `module.`-prefixed);
* this project's training checkpoints and inference exports (state dict under `model`).

Everything is first brought to canonical names (timm's merged names, adapters as `<linear>.lora.A` /
`attn.qkv.lora_{q,k,v}.A`), then copied into the model: adapters load into adapters, or are merged as
`W += scaling * B @ A` (float32) when the model has plain linears.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

REQUIRED_PREFIXES = ("token_type_embed", "head.")  # a tracker checkpoint always has these
_LORA_KEY = re.compile(r"^(?P<module>blocks\.\d+\.(?:attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2))\.lora(?:_(?P<slot>[qkv]))?\.(?P<m>[AB])$")
_OFFICIAL_RENAMES = (
    (re.compile(r"\.attn\.qkv\.([qkv])\.lora\."), r".attn.qkv.lora_\1."),
    (re.compile(r"\.mlp\.w12\."), ".mlp.fc1."),
    (re.compile(r"\.mlp\.w3\."), ".mlp.fc2."),
)
_WRAPPED_LINEAR = re.compile(r"\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.linear\.")
_SPLIT_QKV = re.compile(r"^(?P<prefix>blocks\.\d+\.attn\.qkv)\.(?P<slot>[qkv])\.(?:linear\.)?(?P<p>weight|bias)$")


class CheckpointError(ValueError):
    """The checkpoint does not fit the model (unknown keys, shape mismatches, missing parts)."""


@dataclass
class LoadReport:
    path: str
    loaded: list[str] = field(default_factory=list)
    merged_lora: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the file did not provide (kept as they were)
    lora_scaling: float | None = None


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
    for pattern, replacement in _OFFICIAL_RENAMES:
        key = pattern.sub(replacement, key)
    return _WRAPPED_LINEAR.sub(r".\1.", key)


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
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{prefix}: split q/k/v {param} incomplete, has only {sorted(parts)}")
        out[f"{prefix}.{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def _lora_scaling(extras: dict[str, object], lora: dict[str, torch.Tensor]) -> float:
    """Upstream's merge: alpha / r (or / sqrt(r) with rsLoRA) when the file records alpha, else 1.0."""
    if "lora_alpha" not in extras or not lora:
        return 1.0
    rank = next(v for k, v in lora.items() if k.endswith(".A")).shape[0]
    return float(extras["lora_alpha"]) / (rank ** 0.5 if extras.get("use_rslora") else rank)


def load_checkpoint(model: nn.Module, path: str | Path) -> LoadReport:
    """Load `path` into `model` (built by `build_model`) in place; raise `CheckpointError` on any mismatch."""
    state, extras = read_state_dict(path)
    state = _canonical_state(state)
    lora = {k: v for k, v in state.items() if _LORA_KEY.match(k)}
    plain = {k: v for k, v in state.items() if k not in lora}
    target = model.state_dict()
    by_canonical = {canonical_key(k): k for k in target}
    has_adapters = any(k in target for k in lora) or any(".lora" in k for k in target)

    unknown = [k for k in plain if k not in by_canonical]
    if has_adapters:
        unknown += [k for k in lora if k not in target]
    else:
        unknown += [k for k in lora if f"{_LORA_KEY.match(k)['module']}.weight" not in by_canonical]
    if unknown:
        raise CheckpointError(f"{path}: keys the model does not have (wrong variant or not a LoRAT checkpoint): "
                              f"{sorted(unknown)}")
    shapes = {**{k: tuple(target[by_canonical[k]].shape) for k in plain},
              **({k: tuple(target[k].shape) for k in lora} if has_adapters else {})}
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {s}" for k, s in shapes.items() if tuple(state[k].shape) != s]
    if wrong:
        raise CheckpointError(f"{path}: shape mismatches (wrong size variant or search size?): {wrong}")
    absent = [p for p in REQUIRED_PREFIXES if not any(k.startswith(p) for k in plain)]
    if absent:
        raise CheckpointError(f"{path}: no {' / '.join(absent)} weights: this is not a LoRAT tracker checkpoint "
                              f"(backbone weights go to build_model(..., backbone_weights=...))")
    base_in_file = any(k.startswith("blocks.") for k in plain)
    if not base_in_file and getattr(model, "pretrained_backbone", None) is None:
        raise CheckpointError(f"{path} holds only the trained LoRA/head weights; the frozen backbone must come from "
                              f"the pretrained DINOv2 file: build the model with backbone_weights=... "
                              f"(e.g. pretrained/dinov2_vitb14_pretrain.pth)")

    report = LoadReport(str(path))
    with torch.no_grad():
        for key, value in plain.items():
            target[by_canonical[key]].copy_(value)
            report.loaded.append(key)
        if has_adapters:
            for key, value in lora.items():
                target[key].copy_(value)
                report.loaded.append(key)
        else:
            report.lora_scaling = _lora_scaling(extras, lora)
            _merge_into(target, by_canonical, lora, report)
    if base_in_file:  # the frozen weights now come from this file: later LoRA-only files may merge onto them
        model.pretrained_backbone = str(path)
    provided = {by_canonical[k] for k in plain} | (set(lora) if has_adapters else set())
    report.missing = sorted(k for k in target if k not in provided)
    return report


def _merge_into(target: dict[str, torch.Tensor], by_canonical: dict[str, str], lora: dict[str, torch.Tensor],
                report: LoadReport) -> None:
    pairs: dict[tuple[str, str | None], dict[str, torch.Tensor]] = {}
    for key, value in lora.items():
        m = _LORA_KEY.match(key)
        pairs.setdefault((m["module"], m["slot"]), {})[m["m"]] = value
    for (module, slot), ab in sorted(pairs.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"{module}: LoRA pair incomplete (has only {sorted(ab)})")
        weight = target[by_canonical[f"{module}.weight"]]
        rows = weight.shape[0] // 3
        view = weight["qkv".index(slot) * rows:("qkv".index(slot) + 1) * rows] if slot else weight
        delta = report.lora_scaling * (ab["B"].float() @ ab["A"].float())
        if delta.shape != view.shape:
            raise CheckpointError(f"{module}: LoRA update {tuple(delta.shape)} does not fit weight {tuple(view.shape)}")
        view.copy_((view.float() + delta).to(view.dtype))
        report.merged_lora.append(f"{module}{'.' + slot if slot else ''}")


def official_key(key: str, swiglu: bool) -> str:
    """This project's training names -> the official release names (q/k/v adapters nested, ViT-g's w12/w3)."""
    key = re.sub(r"\.attn\.qkv\.lora_([qkv])\.", r".attn.qkv.\1.lora.", key)
    if swiglu:
        key = key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.")
    return key


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
