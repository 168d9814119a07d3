"""Training path settings: a field with another home is not offered, and old files that set it still load."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lib.train.admin.environment import env_settings
from lib.utils.paths import PRETRAINED_DIR

ROOT = Path(__file__).resolve().parents[1]

# lib/train/admin/local.py as tracking/create_default_local_file.py wrote it before these fields were retired
OLD_LOCAL = """class EnvironmentSettings:
    def __init__(self) -> None:
        self.workspace_dir = '{w}'
        self.tensorboard_dir = '{w}/output/tensorboard'
        self.pretrained_networks = '{w}/my_weights'
        self.lasot_dir = '{w}/data/lasot'
        self.got10k_dir = '{w}/data/got10k'
        self.trackingnet_dir = '{w}/data/trackingnet'
        self.coco_dir = '{w}/data/coco'
        self.lasot_lmdb_dir = '{w}/data/lasot_lmdb'
        self.got10k_lmdb_dir = '{w}/data/got10k_lmdb'
        self.trackingnet_lmdb_dir = '{w}/data/trackingnet_lmdb'
        self.coco_lmdb_dir = '{w}/data/coco_lmdb'
        self.synthetic_dir = '{w}/data/synthetic'
        self.save_dir = '{w}/output'
"""


def test_an_old_local_file_loads_and_says_that_pretrained_networks_is_not_used(tmp_path, caplog):
    local = tmp_path / "local.py"
    local.write_text(OLD_LOCAL.format(w=tmp_path))
    with caplog.at_level("WARNING", logger="lorat.env"):
        settings = env_settings(str(local))
    assert settings.got10k_dir == f"{tmp_path}/data/got10k"
    assert f"{local} sets pretrained_networks, which is not used: backbone weights are read from {PRETRAINED_DIR} " \
           f"or from --backbone_weights" in caplog.text
    assert f"{local} sets tensorboard_dir, which is not used: tensorboard logs go to <--save_dir>/tensorboard" \
           in caplog.text
    assert not hasattr(settings, "pretrained_networks") and not hasattr(settings, "tensorboard_dir")


def test_a_new_local_file_has_no_retired_field(tmp_path):
    out = subprocess.run([sys.executable, "tracking/create_default_local_file.py", "--workspace_dir", str(tmp_path),
                          "--data_dir", str(tmp_path), "--save_dir", str(tmp_path), "--train_local",
                          str(tmp_path / "train.py"), "--test_local", str(tmp_path / "test.py")],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "train.py").read_text()
    assert "self.got10k_dir" in text and "pretrained_networks" not in text and "tensorboard_dir" not in text
