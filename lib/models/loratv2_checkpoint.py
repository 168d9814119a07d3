"""Reading and writing LoRATv2 checkpoints (docs/loratv2.md, "Checkpoints").

Accepted files (safetensors, also when named `.bin`, or torch pickles; a state dict possibly under `model`):
* official files (upstream https://github.com/LitingLin/LoRAT, trackit/models/methods/LoRATv2/model.py names):
  trainable keys only, `blocks.i.attn.qkv.e.{q,k,v}.lora.{A,B}`, `blocks.i.{attn.proj,mlp.fc1,mlp.fc2}.e.lora.{A,B}`,
  `template_token_type_embed`, `search_region_token_type_embed.s`, `heads.s.*`. A phase-1 file has experts 0 and 1
  (template, 224 search), a phase-2 file only expert 2 (378 search) and stream 1's embed and head;
* this project's training checkpoints (`trainable_state_dict` under `model`, q/k/v adapters named `lora_q` ...) and
  merged inference exports (the full state dict of the inference build under `model`).

Each model tensor comes from the file (or the `base_checkpoint` file), from the backbone weight file, or (training
models only) stays as `build_model` made it. A LoRA pair meeting a plain expert is merged as
`W_e = W_pretrained + B_e A_e` where `W_pretrained` is read from the backbone file (or, in a training model, from a
LoRA expert's frozen base), never from the expert's current weight: loading twice gives the same model.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from lib.models.backbone import backbone_state_dict, create_vit
from lib.models.checkpoint import (CheckpointError, LoadReport, alternatives, describe_keys, natural_order,
                                   read_state_dict)
from lib.models.lora import QKV_SLOTS, QKV_TARGET, adapter_name, lora_delta, lora_scaling, merged_weight
from lib.models.loratv2 import EXPERT_ROLES, LoRATv2

_ROLE, _SLOT = alternatives(EXPERT_ROLES), alternatives(QKV_SLOTS)
_ADAPTER = alternatives(adapter_name(s) for s in (None, *QKV_SLOTS))
_QKV, _PLAIN_ADAPTER = re.escape(QKV_TARGET), re.escape(adapter_name(None))
_SLOT_OF_ADAPTER = {adapter_name(slot): slot for slot in QKV_SLOTS}  # lora_q -> q
# Canonical names (the inference build's, plus adapters as lib/models/lora.py names them).
_EXPERT_PARAM = re.compile(rf"^blocks\.(?P<block>\d+)\.(?P<role>{_ROLE})\.(?P<expert>\d+)\.(?P<p>weight|bias)$")
_ADAPTER_KEY = re.compile(rf"^blocks\.(?P<block>\d+)\.(?P<role>{_ROLE})\.(?P<expert>\d+)\.(?P<adapter>{_ADAPTER})"
                          rf"\.(?P<m>[AB])$")
# Upstream nests q/k/v adapters under their slot (`attn.qkv.e.q.lora.A`); this project names them by adapter_name.
_OFFICIAL_QKV = re.compile(rf"\.{_QKV}\.(?P<expert>\d+)\.(?P<slot>{_SLOT})\.{_PLAIN_ADAPTER}\.")
_OURS_QKV = re.compile(rf"\.{_QKV}\.(?P<expert>\d+)\.(?P<adapter>{alternatives(_SLOT_OF_ADAPTER)})\.")
_WRAPPED = re.compile(rf"\.({_ROLE})\.(\d+)\.linear\.")
_SHARED_BACKBONE = re.compile(r"^(pos_embed|reg_token|patch_embed\..*|blocks\.\d+\.(norm1|norm2|ls1|ls2)\..*)$")
_NORM_COPY = re.compile(r"^norms\.\d+\.(?P<p>weight|bias)$")
BUILD = "build"  # `LoadReport.sources` value: kept as build_model made it


def canonical_key(key: str) -> str:
    """Official / training-model names -> canonical: q/k/v adapters `qkv.e.lora_q`, LoRA bases without `.linear`."""
    key = _OFFICIAL_QKV.sub(lambda m: f".{QKV_TARGET}.{m['expert']}.{adapter_name(m['slot'])}.", key)
    return _WRAPPED.sub(r".\1.\2.", key)


def official_key(key: str) -> str:
    """This project's names -> upstream's (q/k/v adapters nested under their slot)."""
    return _OURS_QKV.sub(
        lambda m: f".{QKV_TARGET}.{m['expert']}.{_SLOT_OF_ADAPTER[m['adapter']]}.{adapter_name(None)}.", key)


def backbone_key(key: str) -> str | None:
    """The pretrained (timm) tensor a canonical model key starts from, None for LoRATv2's own tensors."""
    m = _EXPERT_PARAM.match(key)
    if m:
        return f"blocks.{m['block']}.{m['role']}.{m['p']}"
    m = _NORM_COPY.match(key)
    if m:
        return f"norm.{m['p']}"
    return key if _SHARED_BACKBONE.match(key) else None


def expert_of(key: str) -> int | None:
    """The chunk/expert a canonical key belongs to: its expert linears and adapters, the template's token types
    (0), stream s's token type and head (s + 1); None for shared tensors."""
    m = _EXPERT_PARAM.match(key) or _ADAPTER_KEY.match(key)
    if m:
        return int(m["expert"])
    if key == "template_token_type_embed":
        return 0
    m = re.match(r"^(search_region_token_type_embed|heads)\.(\d+)(\.|$)", key)
    return int(m[2]) + 1 if m else None


def _read(path: str | Path) -> dict[str, torch.Tensor]:
    state, extras = read_state_dict(path)
    state = {canonical_key(k): v for k, v in state.items()}
    if "lora_alpha" in extras:  # this project's checkpoints record the config's alpha; official files none
        rank = next((v.shape[0] for k, v in state.items() if _ADAPTER_KEY.match(k) and k.endswith(".A")), None)
        if rank is not None and lora_scaling(float(extras["lora_alpha"]), rank, bool(extras.get("use_rslora"))) != 1:
            raise CheckpointError(f"{path}: LoRA alpha {extras['lora_alpha']} with r={rank} (scaling != 1): LoRATv2 "
                                  f"requires alpha == r (its LoRA forward applies no scaling)")
    return state


def _pretrained(model: LoRATv2, backbone_weights: str | Path | None) -> dict[str, torch.Tensor] | None:
    """The backbone file's tensors under timm names (read against a meta-device copy of the architecture)."""
    if backbone_weights is None:
        return None
    with torch.device("meta"):
        vit = create_vit(model.backbone)
    return backbone_state_dict(vit, model.backbone, backbone_weights)


def load_loratv2_checkpoint(model: LoRATv2, path: str | Path, backbone_weights: str | Path | None = None,
                            base_checkpoint: str | Path | None = None) -> LoadReport:
    """Load `path` (and `base_checkpoint`, the phase-1 file of a phase-2 `path`) into `model` in place; raise
    `CheckpointError` on anything that does not fit.

    * Plain experts receive the file's merged weights, or `pretrained + B A` from the file's LoRA pairs.
    * LoRA experts of a training model receive the file's pairs; a stream the files hold nothing of (expert LoRA,
      token type, head) keeps its initialisation (`LoadReport.initialised`): phase-2 training from a phase-1 file.
    * Backbone tensors the files lack come from `backbone_weights`; a training model keeps its own otherwise.
    Anything else missing is an error; a phase-2 file without its phase-1 file says so.
    """
    files = [(str(path), _read(path))] + ([(str(base_checkpoint), _read(base_checkpoint))] if base_checkpoint else [])
    state: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for name, tensors in files:
        twice = sorted(set(tensors) & set(state))
        if twice:
            raise CheckpointError(f"{name} and {origin[twice[0]]} both hold {describe_keys(twice)}: pass a phase-2 "
                                  f"file with the phase-1 file it was trained from, not two copies of one phase")
        state.update(tensors)
        origin.update(dict.fromkeys(tensors, name))
    target = {canonical_key(k): v for k, v in model.state_dict().items()}
    lora_experts = model.lora_experts()
    # the expert weights that only a file can fill: those of plain experts (merged, or pretrained + file LoRA)
    plain_weights = {k for k in target if (m := _EXPERT_PARAM.match(k)) and m["p"] == "weight"
                     and int(m["expert"]) not in lora_experts}
    # the frozen pretrained linears under LoRA experts: never from a checkpoint (it would hold merged weights)
    lora_bases = {k for k in target if (m := _EXPERT_PARAM.match(k)) and int(m["expert"]) in lora_experts}

    copied: dict[str, torch.Tensor] = {}
    pairs: dict[tuple[str, str], dict[str, torch.Tensor]] = {}  # (plain expert weight, q/k/v slot or "") -> A, B
    pair_origin: dict[str, str] = {}  # plain expert weight -> the file its LoRA came from
    unknown = []
    for key, value in state.items():
        m = _ADAPTER_KEY.match(key)
        weight_key = f"blocks.{m['block']}.{m['role']}.{m['expert']}.weight" if m else ""
        if key in target and key not in lora_bases:
            copied[key] = value
        elif weight_key in plain_weights and (m["role"] == "attn.qkv") == (m["adapter"] != adapter_name(None)):
            slot = m["adapter"].removeprefix(adapter_name(None)).lstrip("_")  # qkv: one adapter per slot
            pairs.setdefault((weight_key, slot), {})[m["m"]] = value
            pair_origin[weight_key] = origin[key]
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{path}: keys this model does not have (another variant or phase, a merged weight for "
                              f"an expert this model trains with LoRA, or not a LoRATv2 checkpoint): "
                              f"{describe_keys(unknown)}")
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}" for k, v in copied.items()
             if v.shape != target[k].shape]
    if wrong:
        raise CheckpointError(f"{path}: shape mismatches (another size variant or crop size?): {wrong}")

    filled = set(copied) | set(pair_origin)
    derived = {k for k in target if k not in filled and k not in plain_weights and backbone_key(k) is not None}
    from_backbone = derived if backbone_weights is not None else set()
    kept = derived if backbone_weights is None and lora_experts else set()
    present = {expert_of(k) for k in state} - {None}
    initialised = {k for k in target if k not in filled and backbone_key(k) is None
                   and expert_of(k) in set(lora_experts) - present}
    missing = set(target) - filled - from_backbone - kept - initialised
    if missing:
        raise CheckpointError(_missing_message(path, missing, present, backbone_weights is None))
    pretrained = _pretrained(model, backbone_weights) if from_backbone or pairs else None
    merged = _merged_experts(path, target, pairs, pretrained, lora_experts)  # checked before anything changes

    with torch.no_grad():
        for key in from_backbone:
            target[key].copy_(pretrained[backbone_key(key)])
        for key, value in {**copied, **merged}.items():
            target[key].copy_(value)
    by_model_key = {canonical_key(k): k for k in model.state_dict()}
    sources = {**dict.fromkeys(kept, BUILD), **dict.fromkeys(from_backbone, str(backbone_weights)),
               **{k: origin[k] for k in copied}, **pair_origin}
    return LoadReport(str(path), {by_model_key[k]: sources[k] for k in sorted(sources, key=natural_order)},
                      loaded=sorted(copied, key=natural_order),
                      merged_lora=sorted((w.removesuffix(".weight") + (f".{s}" if s else "") for w, s in pairs),
                                         key=natural_order),
                      initialised=sorted((by_model_key[k] for k in initialised), key=natural_order),
                      lora_scaling=1.0 if pairs else None)


def _merged_experts(path: str | Path, target: dict[str, torch.Tensor], pairs: dict[tuple[str, str], dict],
                    pretrained: dict[str, torch.Tensor] | None,
                    lora_experts: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """`W_pretrained + B A` (float32, cast to the model's dtype) for every plain expert weight with LoRA pairs in the
    file; q/k/v pairs update their rows of the fused weight. Scaling 1: LoRATv2 requires alpha == r."""
    merged: dict[str, torch.Tensor] = {}
    for (weight_key, slot), ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"{path}: {weight_key} {slot}: LoRA pair incomplete (has only {sorted(ab)})")
        if weight_key not in merged:
            merged[weight_key] = _base_weight(target, pretrained, weight_key, lora_experts).to(
                target[weight_key].dtype, copy=True)
        weight = merged[weight_key]
        rows = slice(None)
        if slot:  # the slot's rows of the fused [q; k; v] weight
            dim = weight.shape[0] // len(QKV_SLOTS)
            rows = slice(QKV_SLOTS.index(slot) * dim, (QKV_SLOTS.index(slot) + 1) * dim)
        base = _base_weight(target, pretrained, weight_key, lora_experts)[rows]
        try:
            weight[rows] = merged_weight(base, lora_delta(ab["A"], ab["B"], 1.0))
        except ValueError as e:
            raise CheckpointError(f"{path}: {weight_key}{' ' + slot if slot else ''}: {e}") from e
    return merged


def _base_weight(target: dict[str, torch.Tensor], pretrained: dict[str, torch.Tensor] | None, weight_key: str,
                 lora_experts: tuple[int, ...]) -> torch.Tensor:
    """The pretrained weight a plain expert's LoRA is merged onto (on the CPU, where files are read): the backbone
    file's, or the frozen base of a LoRA expert of the same block linear (training models hold it)."""
    if pretrained is not None:
        return pretrained[backbone_key(weight_key)]
    if lora_experts:
        m = _EXPERT_PARAM.match(weight_key)
        return target[f"blocks.{m['block']}.{m['role']}.{lora_experts[0]}.weight"].detach().cpu()
    raise CheckpointError(f"merging LoRA into {weight_key} needs the pretrained weights it was trained on: pass the "
                          f"backbone file as backbone_weights=... (the one given to build_model)")


def _missing_message(path: str | Path, missing: set[str], present: set[int], no_backbone: bool) -> str:
    experts = {expert_of(k) for k in missing} - {None}
    if experts and present and max(experts) < min(present):
        return (f"{path} is a phase-2 file (it holds stream(s) {sorted(e - 1 for e in present)} only); pass the "
                f"phase-1 file it was trained from as base_checkpoint=... (missing {describe_keys(missing)})")
    if experts and present and min(experts) > max(present):
        return (f"{path} is a phase-1 file; the phase-2 file (expert(s) {sorted(experts)}) is missing: pass it as the "
                f"checkpoint and this file as base_checkpoint=... (missing {describe_keys(missing)})")
    hint = " (the backbone tensors come from the pretrained file: pass it as backbone_weights=...)" \
        if no_backbone and any(backbone_key(k) for k in missing) else ""
    return f"{path} does not hold every tensor of the model; missing {describe_keys(missing)}{hint}"


def save_official_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """The trainable tensors of a LoRATv2 training model in upstream's layout (safetensors), as its trainer saves
    them: a phase-1 model writes a phase-1 file, a phase-2 model a phase-2 file."""
    from safetensors.torch import save

    from lib.utils.io import atomic_write_bytes

    state = {official_key(k): p.detach().contiguous().cpu() for k, p in model.named_parameters() if p.requires_grad}
    path = Path(path)
    atomic_write_bytes(path, save(state))
    return path
