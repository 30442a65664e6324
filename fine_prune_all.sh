#!/usr/bin/env bash
# Regenerate fine_pruned_models/ for the four competition BadNets from the clean validation
# data.  Usage: ./fine_prune_all.sh [--root DIR] [other options of 'python3 -m defense fine-prune']
set -euo pipefail
cd "$(dirname "$0")"
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
for net in sunglasses anonymous_1 anonymous_2 multi_trigger_multi_target; do
    "$python" -m defense fine-prune --net "$net" "$@"
done
