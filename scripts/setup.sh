#!/usr/bin/env bash
# Set up Emoji Mirror in ./.venv: pinned PyTorch, the project (editable) with its requirements, the offline face-detector model.
# Usage: scripts/setup.sh          (to run the app)
#        scripts/setup.sh --dev    (also test tools and the Chromium used by the browser test)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# Exact pins: a looser torch requirement pulls a multi-GB download or a torchvision that does not match.
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
# The project itself, editable, with requirements.txt (and with --dev requirements-dev.txt): the `emoji-mirror` and
# `emoji-mirror-predict` commands. Built by the venv's own setuptools, so no build environment is downloaded.
.venv/bin/python -m pip install --quiet "setuptools>=68"
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi
.venv/bin/python -m pip install --quiet --no-build-isolation -e ".$extras"
if [ "${1:-}" = "--dev" ]; then
  bash scripts/install_browser.sh
fi
.venv/bin/python -m emoji_mirror.face_model
