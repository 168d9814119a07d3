"""Where a training run writes, shared by the trainer and by the tracker that loads the run's final model."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Where pretrained backbone files are looked up by default (see pretrained/README.md).
PRETRAINED_DIR = PROJECT_ROOT / "pretrained"
CHECKPOINT_NAME = re.compile(r"^checkpoint_ep(\d{4})\.pth$")


@dataclass(frozen=True)
class RunPaths:
    """Where a run writes: `<save_dir>/checkpoints/train/<script>/<config>/`, logs and tensorboard."""

    checkpoint_dir: Path
    log_file: Path
    tensorboard_dir: Path

    @classmethod
    def for_run(cls, save_dir: str | Path, script: str, config: str) -> RunPaths:
        save_dir = Path(save_dir)
        return cls(save_dir / "checkpoints" / "train" / script / config, save_dir / "logs" / f"{script}-{config}.log",
                   save_dir / "tensorboard" / "train" / script / config)

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"checkpoint_ep{epoch:04d}.pth"

    def final_export(self, config: str) -> Path:
        return self.checkpoint_dir / f"{config}_final.pth"

    def official_export(self, config: str) -> Path:
        return self.checkpoint_dir / f"{config}_official.bin"

    def checkpoints(self) -> list[Path]:
        """The run's training checkpoints `checkpoint_epNNNN.pth`, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = ((CHECKPOINT_NAME.match(p.name), p) for p in self.checkpoint_dir.iterdir())
        return [p for _, p in sorted((int(m[1]), p) for m, p in found if m)]

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None
