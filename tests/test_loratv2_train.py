"""LoRATv2 training: what trains in each phase (optimiser groups, one real step), phase 2's start from phase 1, and
phase 1 -> phase 2 -> tracking end to end on the synthetic demo data (in this process)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.config import apply_overrides, load_experiment
from lib.models import build_model, load_checkpoint
from lib.train import run_training
from lib.train.admin.environment import env_settings
from lib.train.optim import param_groups
from lib.train.trainer import Trainer, TrainingRun
from lib.utils.distributed import DistInfo
from lib.utils.paths import RunPaths
from lib.utils.synthetic import SyntheticSpec, generate_sequence, write_got10k

ROOT = Path(__file__).resolve().parents[1]
FAST = ["train.epochs=1", "train.batch_size=4", "data.samples_per_epoch=8", "data.num_workers=0",
        "train.warmup_epochs=0.5"]
LORA = re.compile(r"^blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(?P<expert>\d+)\.lora(_[qkv])?\.[AB]$")


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loratv2_data")
    for domain in ("A", "B"):
        write_got10k(root / "synthetic" / domain, "train",
                     SyntheticSpec(domain=domain, num_sequences=4, frames=(8, 12), seed=3))
    spec = importlib.util.spec_from_file_location("create_local", ROOT / "tracking" / "create_default_local_file.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--workspace_dir", str(ROOT), "--data_dir", str(root), "--save_dir", str(root / "output"),
                        "--train_local", str(root / "train_local.py"),
                        "--test_local", str(root / "test_local.py")]) in (0, None)
    return root / "train_local.py"


def _cfg(config: str, extra: tuple[str, ...] = ()):
    return apply_overrides(load_experiment("loratv2", config), [*FAST, *extra])


# ------------------------------------------------------------------------------------------------ what trains
@pytest.mark.parametrize("config, experts", [("demo_p1", {0, 1}), ("demo_p2", {2})])
def test_optimizer_groups_follow_upstream_rules(config, experts):
    """Upstream (trackit per-parameter rules): weight decay on LoRA A/B and head weight matrices; none on biases,
    on tensors that are 1-D after squeeze (a (1, D) stream token type, the (1, hidden) score-layer weight) and on
    names containing 'embed' (the template's (2, D) token types). Phase 1 trains experts 0 and 1 with the template
    token types and stream 0; phase 2 only expert 2 with stream 1."""
    model = build_model(_cfg(config), training=True)
    groups = param_groups(model, 0.1, 1e-4)
    decay = {n for g in groups if g["weight_decay"] == 0.1 for n in g["param_names"]}
    no_decay = {n for g in groups if g["weight_decay"] == 0.0 for n in g["param_names"]}
    assert len(groups) == 2 and not decay & no_decay
    head = next(iter(experts - {0})) - 1  # the trained stream
    shapes = dict((n, p.shape) for n, p in model.named_parameters())
    lora = {n for n in shapes if (m := LORA.match(n)) and int(m["expert"]) in experts}
    head_weights = {n for n in shapes if n.startswith(f"heads.{head}.") and n.endswith(".weight")}
    assert len(lora) == 6 * 6 * 2 * len(experts)  # depth 6, q/k/v/proj/fc1/fc2, A and B
    assert decay == lora | {n for n in head_weights if min(shapes[n]) > 1}
    embeds = {f"search_region_token_type_embed.{head}"} | ({"template_token_type_embed"} if 0 in experts else set())
    assert no_decay == embeds | {n for n in shapes if n.startswith(f"heads.{head}.") and n.endswith(".bias")} \
        | {n for n in head_weights if min(shapes[n]) == 1}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == decay | no_decay


def test_schedule_ends_at_lr_min_5e_6():
    for config in ("p1_base_224", "p1_large_224", "p2_base_378", "p2_large_378"):
        train = load_experiment("loratv2", config).train
        assert (train.lr, train.min_lr, train.weight_decay, train.epochs) == (1e-4, 5e-6, 0.1, 170)


def _trainer(tmp_path: Path, env_file: Path, config: str, extra: tuple[str, ...] = ()) -> Trainer:
    """An in-process Trainer doing one iteration of 4 samples on the demo data (no checkpoints written)."""
    cfg = _cfg(config, ("data.samples_per_epoch=4", *extra))
    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    pairs = run_training.make_pairs(cfg, cfg.data.train, cfg.data.samples_per_epoch, cfg.train.seed, dist,
                                    env_settings(str(env_file)))
    return Trainer(TrainingRun(cfg, build_model(cfg, training=True), pairs, None, dist,
                               RunPaths.for_run(tmp_path, "loratv2", config),
                               {"backbone_weights": None, "init_checkpoint": None}, num_workers=0))


@pytest.mark.parametrize("config, streams", [("demo_p1", ("x",)), ("demo_p2", ("x_0", "x"))])
def test_one_training_step_moves_exactly_the_trainable_parameters(tmp_path, env_file, config, streams, one_thread):
    trainer = _trainer(tmp_path, env_file, config)
    assert trainer.actor.batch_keys[:1 + len(streams)] == ("z", *streams)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    means = trainer.train_epoch(0)
    assert np.isfinite(means["loss"])
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    if config == "demo_p2":  # the frozen template and reference experts did not move
        assert all(int(m["expert"]) == 2 for k in changed if (m := LORA.match(k)))
        assert not {k for k in changed if re.match(r"^blocks\.\d+\.\S+\.[01]\.", k)}


def test_bf16_autocast_step_runs_close_to_fp32(tmp_path, env_file, one_thread):
    """AMP as for LoRAT: the chunked attention and the LoRA experts under bf16 autocast (no gradient scaler)."""
    fp32 = _trainer(tmp_path / "fp32", env_file, "demo_p2").train_epoch(0)
    trainer = _trainer(tmp_path / "bf16", env_file, "demo_p2", ("train.amp=bf16",))
    bf16 = trainer.train_epoch(0)
    assert not trainer.scaler.is_enabled() and "loss_scale" not in bf16
    assert bf16["loss"] != fp32["loss"]  # autocast really ran in bfloat16
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.02)


def test_phase2_without_the_phase1_checkpoint_is_an_error(tmp_path, env_file):
    with pytest.raises(ValueError, match=r"LoRATv2 phase 2.*--init_checkpoint <phase-1 final>"):
        run_training.main(["--script", "loratv2", "--config", "demo_p2", "--save_dir", str(tmp_path), "--env_file",
                           str(env_file), "--cpu", "--set", *FAST])


# ------------------------------------------------------------------------------------------------ end to end
def _inputs(cfg, n: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t, f = cfg.model.template_size, cfg.model.template_feat_size
    return (torch.randn(n, 3, t, t, generator=g), [torch.randn(n, 3, s, s, generator=g) for s in cfg.model.search_sizes],
            torch.randint(0, 2, (n, f, f), generator=g))


@pytest.fixture(scope="module")
def phase1(tmp_path_factory, env_file) -> RunPaths:
    """A demo phase-1 run (one epoch of 8 samples), in this process."""
    save_dir = tmp_path_factory.mktemp("loratv2_p1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one_thread fixture: tiny models run faster so on shared cores
    try:
        assert run_training.main(["--script", "loratv2", "--config", "demo_p1", "--save_dir", str(save_dir),
                                  "--env_file", str(env_file), "--cpu", "--set", *FAST]) == 0
    finally:
        torch.set_num_threads(threads)
    return RunPaths.for_run(save_dir, "loratv2", "demo_p1")


def _phase2(save_dir: Path, env_file: Path, phase1: RunPaths, extra: tuple[str, ...] = ()) -> int:
    return run_training.main(["--script", "loratv2", "--config", "demo_p2", "--save_dir", str(save_dir),
                              "--env_file", str(env_file), "--cpu", "--init_checkpoint",
                              str(phase1.final_export("demo_p1")), "--set", *FAST, *extra])


def test_phase1_then_phase2_then_tracking_with_the_phase2_checkpoint_alone(tmp_path, env_file, one_thread, phase1):
    p1 = phase1
    assert "initial weights" not in p1.log_file.read_text()  # phase 1 starts from the backbone alone
    assert _phase2(tmp_path, env_file, p1) == 0
    p2 = RunPaths.for_run(tmp_path, "loratv2", "demo_p2")
    assert "initial weights:" in p2.log_file.read_text()

    # the phase-2 training checkpoint: only the new stream's tensors, on top of the recorded phase-1 file
    ckpt = torch.load(p2.checkpoint(1), map_location="cpu", weights_only=True)
    assert ckpt["base"]["init_checkpoint"] == str(p1.final_export("demo_p1").resolve())
    for key in ckpt["model"]:
        m = LORA.match(key)
        assert (m and m["expert"] == "2") or key.startswith(("heads.1.", "search_region_token_type_embed.1")), key

    # the phase-2 export carries the phase-1 tensors it was trained on (merged experts 0/1, template types, stream 0)
    first = torch.load(p1.final_export("demo_p1"), map_location="cpu", weights_only=True)["model"]
    final = torch.load(p2.final_export("demo_p2"), map_location="cpu", weights_only=True)["model"]
    for key in ("blocks.0.attn.qkv.0.weight", "blocks.5.mlp.fc2.1.weight", "template_token_type_embed",
                "search_region_token_type_embed.0", "heads.0.reg_mlp.layers.2.weight"):
        assert torch.equal(final[key], first[key]), key
    assert not torch.equal(final["blocks.0.attn.qkv.2.weight"], first["blocks.0.attn.qkv.1.weight"])

    # ... and alone it gives the trained phase-2 model: phase-1 file + phase-2 trainables in the training build
    cfg = _cfg("demo_p2")
    merged = build_model(cfg, training=False)
    report = load_checkpoint(merged, p2.final_export("demo_p2"))
    assert set(report.sources.values()) == {str(p2.final_export("demo_p2"))}
    trained = build_model(cfg, training=True)
    load_checkpoint(trained, p1.final_export("demo_p1"))
    missing, unexpected = trained.load_state_dict(ckpt["model"], strict=False)
    assert not unexpected
    inputs = _inputs(cfg)
    with torch.no_grad():
        a, b = merged(*inputs), trained.eval()(*inputs)
    assert torch.allclose(a["score_map"], b["score_map"], atol=1e-5)
    assert torch.allclose(a["boxes"], b["boxes"], atol=1e-5)

    # the official release files of the two phases (upstream's layout) give the same model
    official = build_model(cfg, training=True)
    load_checkpoint(official, p2.official_export("demo_p2"), base_checkpoint=p1.official_export("demo_p1"))
    with torch.no_grad():
        c = official.eval()(*inputs)
    assert torch.allclose(a["score_map"], c["score_map"], atol=1e-5)
    assert torch.allclose(a["boxes"], c["boxes"], atol=1e-5)

    _track_and_score(p2.final_export("demo_p2"))


def test_phase2_resumes_on_its_phase1_base_to_the_same_weights(tmp_path, env_file, one_thread, phase1, monkeypatch):
    two_epochs = ("train.epochs=2", "train.save_every=1")
    assert _phase2(tmp_path / "full", env_file, phase1, two_epochs) == 0
    original = Trainer.train_epoch

    def killed_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill")
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _phase2(tmp_path / "killed", env_file, phase1, two_epochs)
    monkeypatch.setattr(Trainer, "train_epoch", original)
    assert _phase2(tmp_path / "killed", env_file, phase1, two_epochs) == 0
    resumed = RunPaths.for_run(tmp_path / "killed", "loratv2", "demo_p2")
    assert "resumed from" in resumed.log_file.read_text()
    a = torch.load(RunPaths.for_run(tmp_path / "full", "loratv2", "demo_p2").checkpoint(2), weights_only=True)["model"]
    b = torch.load(resumed.checkpoint(2), weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _track_and_score(checkpoint: Path) -> None:
    """The LoRATv2 tracker on the phase-2 export alone: two synthetic domain-B sequences, OPE-scored."""
    from lib.test.analysis.metrics import SequenceGT, evaluate_ope
    from lib.test.tracker import build_tracker, resolve_spec

    tracker = build_tracker(resolve_spec("loratv2", "demo_p2", checkpoint=str(checkpoint)))
    results, gts = {}, []
    for index in range(2):
        frames, boxes, _ = generate_sequence(SyntheticSpec(domain="B", num_sequences=2, frames=(6, 6), seed=9), index)
        tracker.initialize(frames[0], boxes[0])
        predictions = [boxes[0]] + [tracker.track(frame)[0] for frame in frames[1:]]
        assert all(np.all(np.isfinite(box)) for box in predictions)
        results[f"seq{index}"] = [np.stack(predictions)]
        gts.append(SequenceGT(f"seq{index}", boxes))
    scores = evaluate_ope(results, gts)
    assert 0.0 <= scores["AUC"] <= 100.0 and np.isfinite(scores["Precision"])


def test_phase2_on_two_gloo_ranks_equals_one_process(tmp_path, env_file, one_thread, phase1):
    """DDP as for LoRAT: `tracking/train.py --mode multiple --nproc_per_node 2` (torchrun, gloo) trains phase 2 to
    the weights of the single-process run (each rank takes half of every global batch; the loss is normalised by the
    positives of all ranks)."""
    from script_helpers import tracking_script
    from test_train import _group_env, _run_process_group

    launcher = tracking_script("train")
    args, rest = launcher.parse_args(
        ["--script", "loratv2", "--config", "demo_p2", "--mode", "multiple", "--nproc_per_node", "2",
         "--save_dir", str(tmp_path / "ddp"), "--env_file", str(env_file), "--cpu",
         "--init_checkpoint", str(phase1.final_export("demo_p1")), "--set", *FAST])
    done = _run_process_group(launcher.build_command(args, rest), _group_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert _phase2(tmp_path / "single", env_file, phase1) == 0
    a = torch.load(RunPaths.for_run(tmp_path / "single", "loratv2", "demo_p2").checkpoint(1), weights_only=True)
    b = torch.load(RunPaths.for_run(tmp_path / "ddp", "loratv2", "demo_p2").checkpoint(1), weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=1e-5, msg=key)
    moved = build_model(_cfg("demo_p2"), training=True).state_dict()
    assert any(not torch.equal(moved[k], a["model"][k]) for k in a["model"] if k in moved)  # training changed them
