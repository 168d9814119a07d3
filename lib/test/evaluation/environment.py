"""Evaluation path settings: loading the user's generated `lib/test/evaluation/local.py`.

The file defines `local_env_settings()` which fills an `EnvSettings` (pytracking style). Unknown field
names raise at assignment, so a typo such as `lasot_extension_subset_path_path` fails loudly with the line
in local.py instead of surfacing later as an AttributeError.
"""
from __future__ import annotations

import os

from lib.train.admin.environment import FIX_COMMAND, PathSettings, load_python_file, settings_source

DEFAULT_LOCAL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "local.py")

# field -> (root, sub-path): root is "W" (workspace_dir), "D" (data_dir) or "S" (save_dir).
TEST_FIELDS: dict[str, tuple[str, str]] = {
    "prj_dir": ("W", ""),
    "save_dir": ("S", ""),
    "results_path": ("S", "test/tracking_results"),
    "result_plot_path": ("S", "test/result_plots"),
    "packed_results_path": ("S", "test/packed_results"),
    "lasot_path": ("D", "lasot"),
    "lasot_extension_subset_path": ("D", "lasot_extension_subset"),
    "got10k_path": ("D", "got10k"),
    "trackingnet_path": ("D", "trackingnet"),
    "tnl2k_path": ("D", "tnl2k"),
    "otb_path": ("D", "otb"),
    "uav_path": ("D", "uav"),
    "nfs_path": ("D", "nfs"),
    "tc128_path": ("D", "tc128"),
    "vasttrack_path": ("D", "vasttrack"),
    "synthetic_path": ("D", "synthetic"),
}


class EnvSettings(PathSettings):
    """Evaluation paths (see TEST_FIELDS); `require(name)` checks a dataset folder exists."""

    FIELDS = tuple(TEST_FIELDS)


def local_file_source(workspace_dir: str, data_dir: str, save_dir: str) -> str:
    """Text of a fresh `lib/test/evaluation/local.py`."""
    preamble = ["from lib.test.evaluation.environment import EnvSettings", "", "",
                "def local_env_settings() -> EnvSettings:", "    settings = EnvSettings()"]
    return settings_source("Evaluation", TEST_FIELDS, (workspace_dir, data_dir, save_dir), preamble, "settings",
                           " " * 4, epilogue=("    return settings",))


def env_settings(path: str | None = None) -> EnvSettings:
    """Load evaluation path settings from `path` (default: lib/test/evaluation/local.py)."""
    path = os.path.abspath(path or DEFAULT_LOCAL_PATH)
    module = load_python_file(path)
    if not hasattr(module, "local_env_settings"):
        raise ValueError(f"{path} defines no function local_env_settings(). Regenerate it with: {FIX_COMMAND} --force")
    try:
        settings = module.local_env_settings()
    except AttributeError as exc:
        raise ValueError(f"{path}: {exc}. Fix the field name in that file.") from exc
    if not isinstance(settings, EnvSettings):
        raise ValueError(f"{path}: local_env_settings() must return an EnvSettings, got {type(settings).__name__}")
    object.__setattr__(settings, "source", path)
    settings.check_complete()
    return settings
