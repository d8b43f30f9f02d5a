#!/usr/bin/env bash
# Prepare the GPU sprint on this machine: pack the data (kept while newer than its source), print what each device call
# sends against the 64 MiB limit, and the exact device calls (command, carry, timeout_s). Extra flags go to training.sprint.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASETS="${EMOJI_MIRROR_DATASETS:-../shared/datasets}"
exec nice -n 10 .venv/bin/python -m training.sprint --pack --data "$DATASETS/fer2013.zip" --ferplus "$DATASETS/ferplus.zip" "$@"
