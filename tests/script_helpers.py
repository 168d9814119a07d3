"""Import the command-line scripts of tracking/ (plain files, not a package) to call their main() in-process."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def tracking_script(name: str) -> ModuleType:
    """`tracking/<name>.py` as a fresh module (its `if __name__ == "__main__"` block does not run)."""
    path = ROOT / "tracking" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no script {path}")
    spec = importlib.util.spec_from_file_location(f"tracking_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
