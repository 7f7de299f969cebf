#!/usr/bin/env bash
# Runs the shipped core configs with the given seeds (resumable: finished runs are skipped) and prints the table.
# usage: bash benchmarks/core_table.sh OUT_DIR "SEEDS" CONFIG...
#   e.g. bash benchmarks/core_table.sh runs/core "0 1" configs/sst2-badnets-minilm-*.yaml
set -euo pipefail
out=$1; seeds=$2; shift 2
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  for seed in $seeds; do
    p2p run "$cfg" --out "$out/$name/seed$seed" --set seed="$seed" || echo "FAILED: $cfg seed $seed" >&2
  done
done
p2p table "$out"
