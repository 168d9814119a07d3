"""Builders of tiny benchmark trees in the native on-disk layouts (shared by the test_eval/runner/pack tests)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lib.test.evaluation.environment import EnvSettings


def write_frame(path: Path, width: int = 32, height: int = 24, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), value % 256, dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


def write_boxes(path: Path, boxes: np.ndarray, sep: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(f"{v:g}" for v in row) + "\n" for row in boxes))


def make_env(tmp_path: Path, **dataset_paths: str) -> EnvSettings:
    """EnvSettings with every field set (results under tmp_path/out) and the given dataset paths."""
    env = EnvSettings()
    for name in EnvSettings.FIELDS:
        setattr(env, name, "")
    env.prj_dir = str(tmp_path)
    env.save_dir = str(tmp_path / "out")
    env.results_path = str(tmp_path / "out" / "test" / "tracking_results")
    env.result_plot_path = str(tmp_path / "out" / "test" / "result_plots")
    env.packed_results_path = str(tmp_path / "out" / "test" / "packed_results")
    for name, value in dataset_paths.items():
        setattr(env, name, value)
    return env


def write_local_file(path: Path, env: EnvSettings) -> None:
    """A local.py defining local_env_settings() that returns the fields of `env`."""
    lines = ["from lib.test.evaluation.environment import EnvSettings", "", "", "def local_env_settings():",
             "    s = EnvSettings()"]
    lines += [f"    s.{name} = {getattr(env, name)!r}" for name in EnvSettings.FIELDS]
    lines.append("    return s")
    path.write_text("\n".join(lines) + "\n")


def moving_boxes(n: int, start=(4.0, 5.0, 10.0, 8.0), step=(1.0, 0.5)) -> np.ndarray:
    boxes = np.tile(np.asarray(start, dtype=np.float64), (n, 1))
    boxes[:, 0] += step[0] * np.arange(n)
    boxes[:, 1] += step[1] * np.arange(n)
    return boxes


def make_got10k_split(root: Path, split: str, lengths: dict[str, int], full_gt: bool = True,
                      with_list: bool = True) -> dict[str, np.ndarray]:
    """GOT-10k layout `<root>/<split>/<seq>/{00000001.jpg.., groundtruth.txt, absence.label, cover.label}`."""
    gts = {}
    for k, (name, n) in enumerate(lengths.items()):
        seq_dir = root / split / name
        for i in range(n):
            write_frame(seq_dir / f"{i + 1:08d}.jpg", value=40 * k + i)
        gt = moving_boxes(n, start=(3.0 + k, 4.0, 9.0 + k, 7.0))
        gts[name] = gt
        write_boxes(seq_dir / "groundtruth.txt", gt if full_gt else gt[:1])
        if full_gt:
            absence = np.zeros(n, dtype=int)
            absence[-1] = 1
            cover = np.full(n, 8, dtype=int)
            cover[-1] = 0
            (seq_dir / "absence.label").write_text("".join(f"{v}\n" for v in absence))
            (seq_dir / "cover.label").write_text("".join(f"{v}\n" for v in cover))
            (seq_dir / "meta_info.ini").write_text("[METAINFO]\nresolution: (32, 24)\n")
    if with_list:
        (root / split / "list.txt").write_text("".join(f"{name}\n" for name in lengths))
    return gts
