"""Test-only rank entry point: `lib.train.run_training`, except that rank 1 dies (os._exit) at the start of the
second epoch, once per marker file (CRASH_ONCE_MARKER), as a worker killed mid-run would. Run by torchrun in
tests/test_train.py; kept out of the production code."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from lib.train import run_training
from lib.train.trainer import Trainer

MARKER = Path(os.environ["CRASH_ONCE_MARKER"])
_train_epoch = Trainer.train_epoch


def _dies_once(self: Trainer, epoch: int) -> dict[str, float]:
    if epoch == 1 and self.run.dist.rank == 1 and not MARKER.exists():
        MARKER.write_text("rank 1 died at the start of epoch 2\n")
        os._exit(1)
    return _train_epoch(self, epoch)


if __name__ == "__main__":
    Trainer.train_epoch = _dies_once
    sys.exit(run_training.main())
