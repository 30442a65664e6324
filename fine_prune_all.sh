#!/usr/bin/env bash
# Regenerate fine_pruned_models/ for the four competition BadNets from the clean validation
# data.  Usage: ./fine_prune_all.sh [--root DIR] [other options of 'python3 -m defense fine-prune']
set -euo pipefail
cd "$(dirname "$0")"
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
# One process for the four: TensorFlow starts once.
exec "$python" -m defense fine-prune --net sunglasses --net anonymous_1 --net anonymous_2 \
    --net multi_trigger_multi_target "$@"
