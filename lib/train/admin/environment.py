"""Training path settings: loading the user's generated `lib/train/admin/local.py`.

The file is written once by `tracking/create_default_local_file.py` and then edited by the user. Loading
it never rewrites it. A missing/broken/incomplete file is an error naming the file and the fix; a field
that is empty or points at a missing folder is reported only when it is actually needed
(`settings.require("lasot_dir")`), so a user without LaSOT can still train on GOT-10k.

Fields that older generated files set but nothing reads (`RETIRED_FIELDS`) still load, with a warning that says
where that setting lives now, so an edited value is not silently ignored.

Besides the path fields, a local.py may declare `custom_datasets` (your own dataset folders by name, see
lib/datasets/custom.py; an entry's optional `lmdb` is read by training only); older files without it load with none.

`PathSettings` and `load_python_file` are shared with `lib/test/evaluation/environment.py`.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from types import MappingProxyType, ModuleType
from typing import ClassVar

from lib.datasets.custom import CustomDataset, parse_custom_datasets
from lib.utils.paths import PRETRAINED_DIR

logger = logging.getLogger("lorat.env")

FIX_COMMAND = (
    "python tracking/create_default_local_file.py --workspace_dir . --data_dir ./data --save_dir ./output"
)
DEFAULT_LOCAL_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "local.py")

# field -> (root, sub-path): root is "W" (workspace_dir), "D" (data_dir) or "S" (save_dir).
TRAIN_FIELDS: dict[str, tuple[str, str]] = {
    "workspace_dir": ("W", ""),
    "lasot_dir": ("D", "lasot"),
    "got10k_dir": ("D", "got10k"),
    "trackingnet_dir": ("D", "trackingnet"),
    "coco_dir": ("D", "coco"),
    "lasot_lmdb_dir": ("D", "lasot_lmdb"),
    "got10k_lmdb_dir": ("D", "got10k_lmdb"),
    "trackingnet_lmdb_dir": ("D", "trackingnet_lmdb"),
    "coco_lmdb_dir": ("D", "coco_lmdb"),
    "synthetic_dir": ("D", "synthetic"),
    "save_dir": ("S", ""),
}

# field -> where that setting lives instead (the one home of the concept)
RETIRED_FIELDS: MappingProxyType[str, str] = MappingProxyType({
    "pretrained_networks": f"backbone weights are read from {PRETRAINED_DIR} or from --backbone_weights",
    "tensorboard_dir": "tensorboard logs go to <--save_dir>/tensorboard/train/<script>/<config>",
})


CUSTOM_DATASETS_FIELD = "custom_datasets"
CUSTOM_DATASETS_HINT = ("your own dataset folders by name, e.g. {'my_drones': {'format': 'got10k', 'root': "
                        "'/data/my_drones'}}; formats: lib/datasets/custom.py; for training with data.use_lmdb add "
                        "'lmdb': '/fast/my_drones_lmdb' (tracking/build_lmdb.py --custom my_drones)")


class PathSettings:
    """A fixed set of string path fields, plus `custom_datasets`; assigning an unknown name is an error (catches
    typos)."""

    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        object.__setattr__(self, "source", "<not loaded from a file>")
        object.__setattr__(self, CUSTOM_DATASETS_FIELD, {})
        for name in self.FIELDS:
            object.__setattr__(self, name, None)

    def __setattr__(self, name: str, value: object) -> None:
        if name not in self.FIELDS and name != CUSTOM_DATASETS_FIELD:
            raise AttributeError(
                f"{type(self).__name__} has no field {name!r} (typo?); known fields: {', '.join(self.FIELDS)}"
            )
        object.__setattr__(self, name, value)

    def check_complete(self) -> None:
        """Every field must have been assigned a string by local.py (an empty string is allowed here)."""
        for name in self.FIELDS:
            value = getattr(self, name)
            if value is None:
                raise ValueError(
                    f"{self.source} does not set the field {name!r} (incomplete or outdated local.py). "
                    f"Add it by hand, or regenerate the file with: {FIX_COMMAND} --force"
                )
            if not isinstance(value, str):
                raise ValueError(f"{self.source}: field {name!r} must be a string path, got {value!r}")
        parse_custom_datasets(getattr(self, CUSTOM_DATASETS_FIELD), self.source)

    def custom_dataset(self, name: str) -> CustomDataset | None:
        """The custom dataset local.py declares as `name`, else None."""
        return parse_custom_datasets(getattr(self, CUSTOM_DATASETS_FIELD), self.source).get(name)

    def require(self, name: str) -> str:
        """Return field `name`, which must be a non-empty path to an existing folder."""
        if name not in self.FIELDS:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}; known: {', '.join(self.FIELDS)}")
        value = getattr(self, name)
        if not value:
            raise ValueError(
                f"the path setting {name!r} is empty in {self.source}. Set it to the folder holding that data, "
                f"or generate defaults with: {FIX_COMMAND}"
            )
        if not os.path.isdir(value):
            raise FileNotFoundError(
                f"the path setting {name!r} = {value!r} (from {self.source}) is not an existing folder. "
                f"Put the data there or edit {self.source}; defaults come from: {FIX_COMMAND}"
            )
        return value


class EnvironmentSettings(PathSettings):
    """Training paths (see TRAIN_FIELDS)."""

    FIELDS = tuple(TRAIN_FIELDS)


def resolve_fields(spec: dict[str, tuple[str, str]], workspace_dir: str, data_dir: str, save_dir: str) -> dict:
    """Absolute path of every field of `spec` for the given roots."""
    roots = {
        "W": os.path.realpath(workspace_dir),
        "D": os.path.realpath(data_dir),
        "S": os.path.realpath(save_dir),
    }
    return {name: os.path.join(roots[root], sub) if sub else roots[root] for name, (root, sub) in spec.items()}


def settings_source(title: str, fields: dict[str, tuple[str, str]], roots: tuple[str, str, str], preamble: list[str],
                    target: str, indent: str, epilogue: tuple[str, ...] = ()) -> str:
    """Text of a generated local.py: the preamble, then `<target>.<field> = '<path>'` for every field and an empty
    custom-dataset table (the training and the evaluation file differ only in the code around the assignments)."""
    values = resolve_fields(fields, *roots)
    lines = [f"# {title} path settings, generated by tracking/create_default_local_file.py. Edit freely;",
             "# it is never overwritten unless you pass --force. Not tracked by git.", *preamble]
    lines += [f"{indent}{target}.{name} = {value!r}" for name, value in values.items()]
    lines += [f"{indent}# {CUSTOM_DATASETS_HINT}", f"{indent}{target}.{CUSTOM_DATASETS_FIELD} = {{}}", *epilogue]
    return "\n".join(lines) + "\n"


def local_file_source(workspace_dir: str, data_dir: str, save_dir: str) -> str:
    """Text of a fresh `lib/train/admin/local.py`."""
    preamble = ["", "", "class EnvironmentSettings:", "    def __init__(self) -> None:"]
    return settings_source("Training", TRAIN_FIELDS, (workspace_dir, data_dir, save_dir), preamble, "self", " " * 8)


def load_python_file(path: str) -> ModuleType:
    """Execute a settings file as a private module; errors name the file and the fix."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path settings file {path} does not exist. Create it with: {FIX_COMMAND}")
    spec = importlib.util.spec_from_file_location(f"_local_settings_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise RuntimeError(
            f"path settings file {path} failed to load ({type(exc).__name__}: {exc}). Fix the file, or "
            f"regenerate it with: {FIX_COMMAND} --force"
        ) from exc
    return module


def env_settings(path: str | None = None) -> EnvironmentSettings:
    """Load training path settings from `path` (default: lib/train/admin/local.py)."""
    path = os.path.abspath(path or DEFAULT_LOCAL_PATH)
    module = load_python_file(path)
    if not hasattr(module, "EnvironmentSettings"):
        raise ValueError(f"{path} defines no class EnvironmentSettings. Regenerate it with: {FIX_COMMAND} --force")
    local = module.EnvironmentSettings()
    settings = EnvironmentSettings()
    object.__setattr__(settings, "source", path)
    for name, value in vars(local).items():
        if name in RETIRED_FIELDS:
            logger.warning("%s sets %s, which is not used: %s. Delete that line to silence this warning.", path,
                           name, RETIRED_FIELDS[name])
            continue
        if name not in TRAIN_FIELDS and name != CUSTOM_DATASETS_FIELD:
            raise ValueError(
                f"{path} sets an unknown field {name!r} (typo?); known fields: {', '.join(TRAIN_FIELDS)}"
            )
        setattr(settings, name, value)
    settings.check_complete()
    return settings
