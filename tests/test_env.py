from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lib.test.evaluation.environment import TEST_FIELDS, EnvSettings
from lib.test.evaluation.environment import env_settings as load_test_env
from lib.train.admin.environment import FIX_COMMAND, TRAIN_FIELDS
from lib.train.admin.environment import env_settings as train_env_settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(tmp_path, *extra):
    cmd = [
        sys.executable, os.path.join(ROOT, "tracking", "create_default_local_file.py"),
        "--workspace_dir", str(tmp_path / "ws"), "--data_dir", "data", "--save_dir", str(tmp_path / "out"),
        "--train_local", str(tmp_path / "train_local.py"), "--test_local", str(tmp_path / "test_local.py"), *extra,
    ]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True)


def test_generated_files_hold_the_contract_fields(tmp_path):
    generate(tmp_path)
    train = train_env_settings(str(tmp_path / "train_local.py"))
    test = load_test_env(str(tmp_path / "test_local.py"))
    ws, data, out = str(tmp_path / "ws"), str(tmp_path / "data"), str(tmp_path / "out")  # relative data dir made absolute
    assert train.workspace_dir == ws and train.save_dir == out
    assert "tensorboard_dir" not in TRAIN_FIELDS and "pretrained_networks" not in TRAIN_FIELDS  # retired (one home)
    assert train.custom_datasets == {} and test.custom_datasets == {}  # your own datasets: none declared yet
    assert train.got10k_dir == f"{data}/got10k" and train.coco_lmdb_dir == f"{data}/coco_lmdb"
    assert train.synthetic_dir == f"{data}/synthetic"
    assert all(os.path.isabs(getattr(train, f)) for f in TRAIN_FIELDS)
    assert test.prj_dir == ws and test.results_path == f"{out}/test/tracking_results"
    assert test.result_plot_path == f"{out}/test/result_plots" and test.packed_results_path == f"{out}/test/packed_results"
    assert test.lasot_extension_subset_path == f"{data}/lasot_extension_subset" and test.got10k_path == f"{data}/got10k"
    assert isinstance(test, EnvSettings) and all(isinstance(getattr(test, f), str) for f in TEST_FIELDS)


def test_existing_files_are_not_overwritten_without_force(tmp_path):
    generate(tmp_path)
    local = tmp_path / "train_local.py"
    edited = local.read_text().replace("/data/lasot'", "/elsewhere/lasot'")
    local.write_text(edited)
    result = generate(tmp_path)
    assert "already exists; left untouched (pass --force" in result.stdout and result.returncode == 0
    assert local.read_text() == edited
    generate(tmp_path, "--force")
    assert "/elsewhere/" not in local.read_text()


def test_load_errors_name_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "nope.py"
    with pytest.raises(FileNotFoundError, match="nope.py does not exist") as info:
        train_env_settings(str(missing))
    assert FIX_COMMAND in str(info.value)
    generate(tmp_path)
    local = tmp_path / "train_local.py"
    good = local.read_text()
    local.write_text(good + "this is not python\n")
    with pytest.raises(RuntimeError, match="train_local.py failed to load.*--force"):
        train_env_settings(str(local))
    assert local.read_text().endswith("this is not python\n")  # never regenerated behind the user's back
    local.write_text("".join(line for line in good.splitlines(True) if "self.coco_dir" not in line))
    with pytest.raises(ValueError, match=r"does not set the field 'coco_dir'") as info:
        train_env_settings(str(local))
    assert FIX_COMMAND in str(info.value)
    local.write_text(good.replace("self.coco_dir", "self.cocodir"))
    with pytest.raises(ValueError, match="unknown field 'cocodir'"):
        train_env_settings(str(local))
    test_local = tmp_path / "test_local.py"
    test_local.write_text(test_local.read_text().replace(".lasot_extension_subset_path", ".lasot_extension_subset_path_path"))
    with pytest.raises(ValueError, match="no field 'lasot_extension_subset_path_path'"):
        load_test_env(str(test_local))


def test_require_checks_when_a_dataset_is_requested(tmp_path):
    generate(tmp_path)
    local = tmp_path / "train_local.py"
    local.write_text(local.read_text().replace(f"self.trackingnet_dir = '{tmp_path}/data/trackingnet'", "self.trackingnet_dir = ''"))
    env = train_env_settings(str(local))  # loading succeeds: unused datasets may be absent
    with pytest.raises(ValueError, match="'trackingnet_dir' is empty in .*train_local.py") as info:
        env.require("trackingnet_dir")
    assert FIX_COMMAND in str(info.value)
    with pytest.raises(FileNotFoundError, match=rf"'lasot_dir' = '{tmp_path}/data/lasot'.*not an existing folder"):
        env.require("lasot_dir")
    (tmp_path / "data" / "lasot").mkdir(parents=True)
    assert env.require("lasot_dir") == f"{tmp_path}/data/lasot"
    with pytest.raises(AttributeError, match="no field 'lasot'"):
        env.require("lasot")
