"""Fixtures shared by several test files."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from script_helpers import ROOT, tracking_script

# The longest test files, longest first. pytest-xdist (--dist loadfile --no-loadscope-reorder in pyproject.toml) hands
# whole files to the workers in collection order, so starting these first lets the other files fill the other worker
# instead of one worker starting a long file when the rest is done. Update from `pytest --durations=0` when it drifts.
START_FIRST = ("test_train.py", "test_demo.py")


def pytest_configure(config: pytest.Config) -> None:
    """One torch (OpenMP) thread per process, also for the processes tests start (they inherit OMP_NUM_THREADS;
    an explicit setting is kept). The suite runs one xdist worker per core, so more threads only oversubscribe the
    cores: the demo's training with a DataLoader worker next to a 2-thread trainer took 3.5x the CPU time on 2 cores."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the files of START_FIRST to the front (a stable sort: every file keeps its own test order)."""
    rank = {name: i for i, name in enumerate(START_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(START_FIRST)))


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (the small-model tests are faster so on 2 cores shared by two workers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys, monkeypatch) -> Callable[..., CliResult]:
    """Run `python tracking/<script>.py ARGS` in this process (no interpreter start, no torch import): exit status,
    stdout and stderr as the process would have them. A `SystemExit("error: ...")` becomes status 1 with the message
    on stderr, as Python does. Any other exception propagates: in a process it would be a traceback, so a test that
    expects a clean error fails on it just the same. Tests about process behaviour (fresh environment variables,
    signals, several processes) start real processes instead."""
    monkeypatch.chdir(ROOT)

    def run(script: str, *args: str) -> CliResult:
        main = tracking_script(script).main
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        if isinstance(code, str):
            err, code = err + code + "\n", 1
        return CliResult(0 if code is None else code, out, err)

    return run
