#!/usr/bin/env bash
# Install every dependency into the active Python (3.10+). Idempotent; stops at the first failure.
set -euo pipefail

PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"Python 3.10+ is required, found {sys.version.split()[0]}")
PY

# torch and torchvision from the registry's default build (CUDA wheels on Linux; they also run on CPU).
"$PYTHON" -m pip install --upgrade-strategy only-if-needed torch torchvision
# OpenCV's contrib build (requirements.txt) and the plain headless build this project used to install both provide
# the cv2 module; the plain one is removed rather than overwritten, so that pip's record matches the files.
if "$PYTHON" -m pip show opencv-python-headless >/dev/null 2>&1; then
    "$PYTHON" -m pip uninstall --yes opencv-python-headless
fi
"$PYTHON" -m pip install --upgrade-strategy only-if-needed -r requirements.txt
# the project itself, editable: `lib` is importable from the scripts in tracking/ and benchmarks/ and from tests
"$PYTHON" -m pip install --no-deps -e .
# The VOT toolkit in its own virtual environment (it pins its own opencv-python, numba, ...); our tracker runs as a
# TraX server from this Python (vot-trax, in requirements.txt). attributee 0.1.10 breaks `import vot` on Python 3.11+.
LORAT_VOT_VENV=${LORAT_VOT_VENV:-$HOME/.cache/lorat/vot-venv}
if [ ! -x "$LORAT_VOT_VENV/bin/vot" ]; then
    "$PYTHON" -m venv "$LORAT_VOT_VENV"
    "$LORAT_VOT_VENV/bin/python" -m pip install --quiet vot-toolkit==0.9.0 attributee==0.1.9
fi
"$PYTHON" - <<'PY'
import cv2, lmdb, pycocotools, timm, torch, torchvision, thop  # noqa: F401  (fail here, not in the middle of a run)
print(f"torch {torch.__version__} (CUDA available: {torch.cuda.is_available()}), torchvision {torchvision.__version__}, "
      f"timm {timm.__version__}, opencv {cv2.__version__}")
PY
echo "install.sh: done. Next: python tracking/create_default_local_file.py --workspace_dir . --data_dir ./data --save_dir ./output"
