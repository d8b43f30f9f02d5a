#!/usr/bin/env bash
# Set up Emoji Mirror in ./.venv: pinned PyTorch, requirements, the offline face-detector model.
# Usage: scripts/setup.sh          (to run the app)
#        scripts/setup.sh --dev    (also test tools and the Chromium used by the browser test)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# Exact pins: a looser torch requirement pulls a multi-GB download or a torchvision that does not match.
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  bash scripts/install_browser.sh
fi
.venv/bin/python -m emoji_mirror.face_model
