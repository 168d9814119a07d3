"""Prepare a VOT toolkit workspace to run our tracker (the work behind tracking/vot_setup.py).

The toolkit (PyPI `vot-toolkit`) lives in its own virtual environment (it brings its own opencv-python, numba and
more); `create_toolkit_venv` makes one with the pins that work (`attributee` 0.1.10 breaks `import vot` on Python
3.11+). The tracker itself runs with this framework's Python: the workspace's trackers.ini names a `trax` command
`<this python> -m lib.test.integrations.vot_trax ...`.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from lib.test.tracker import TrackerSpec, spec_arguments
from lib.utils.io import atomic_write_text

TOOLKIT_PINS = ("vot-toolkit==0.9.0", "attributee==0.1.9")
DEFAULT_STACK = "vot2022/shorttermbox"
# Seconds the toolkit waits for each answer of the tracker, the first one included (the model is built before the
# TraX handshake); the toolkit's default of 30 is too short to load the large backbones on a CPU.
TRAX_TIMEOUT_S = 300


def tracker_command(spec: TrackerSpec) -> str:
    """The command the toolkit starts: this Python running our TraX server with exactly the files of `spec`."""
    return shlex.join([sys.executable, "-m", "lib.test.integrations.vot_trax", *spec_arguments(spec)])


def register_tracker(workspace: Path, name: str, command: str) -> Path:
    """Add (or replace) the `[name]` section of `workspace/trackers.ini`, keeping every other line as it is."""
    path = workspace / "trackers.ini"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept, inside = [], False
    for line in lines:
        if line.strip().startswith("["):
            inside = line.strip() == f"[{name}]"
        if not inside:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    section = [f"[{name}]", f"label = {name}", "protocol = trax", f"command = {command}", f"timeout = {TRAX_TIMEOUT_S}"]
    atomic_write_text(path, "\n".join([*kept, *([""] if kept else []), *section]) + "\n")
    return path


def ensure_config(workspace: Path, stack: str) -> bool:
    """Write `workspace/config.yaml` for `stack` unless the workspace has one (kept as it is); True if written."""
    path = workspace / "config.yaml"
    if path.is_file():
        return False
    atomic_write_text(path, f"registry:\n- ./trackers.ini\nstack: {stack}\n")
    return True


def create_toolkit_venv(venv: Path) -> Path:
    """A virtual environment at `venv` with the VOT toolkit installed (PyPI, pinned); returns its `vot` command."""
    vot = venv / "bin" / "vot"
    if not vot.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *TOOLKIT_PINS], check=True)
    return vot
