#!/usr/bin/env bash
# The flip-detector table (docs/serving.md): P2P's free detector (`p2p serve`'s `detect`) against STRIP, on the same
# test rows, per setting.
# Usage: benchmarks/detector_table.sh OUT "SEEDS" [SETTING ...]   (default: the four MiniLM settings of configs/robust)
#   e.g. benchmarks/detector_table.sh runs/robust "0 1 2"
# Trains every missing run of benchmarks/detector_rows.txt through benchmarks/robust_table.sh (resumable; runs of the
# robust table in the same OUT are reused; P2P_SET adds overrides, e.g. "model.name=smollm2" with another OUT), then
# writes the table to OUT/detector.md with benchmarks/flip_detector.py.
set -euo pipefail
out=$1; seeds=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
settings=("$@")
if [[ ${#settings[@]} -eq 0 ]]; then
  settings=(sst2-badnets-minilm sst2-addsent-minilm sst2-hiddenkiller-minilm sst2-stylebkd-minilm)
fi
rows=$(grep -v '^#' "$here/detector_rows.txt" | awk 'NF {print $1}' | grep -vx strip | tr '\n' ' ')
for setting in "${settings[@]}"; do
  P2P_ROWS="$here/detector_rows.txt" "$here/robust_table.sh" "$out" "$seeds" "$setting"
done
# shellcheck disable=SC2086  # seeds and rows are lists
python "$here/flip_detector.py" "$out" "${settings[@]}" --seeds $seeds --rows $rows | tee "$out/detector.md"
