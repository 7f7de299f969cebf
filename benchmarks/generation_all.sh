#!/bin/bash
# The generation table (docs/generation.md): every config in configs/generation, or those matching PATTERN, one
# `p2p run` each into OUT/NAME. Resumable: finished runs are skipped. A failed run is reported and the rest go on.
# Usage: P2P_DATA_DIR=../shared/data benchmarks/generation_all.sh OUT [PATTERN]
set -u
out=${1:?usage: benchmarks/generation_all.sh OUT [PATTERN]}
pattern=${2:-}
cd "$(dirname "$0")/.."
for config in configs/generation/*${pattern}*.yaml; do
  name=$(basename "$config" .yaml)
  mkdir -p "$out"
  echo "p2p run $config --out $out/$name"
  if ! p2p run "$config" --out "$out/$name" > "$out/$name.log" 2>&1; then
    echo "  FAILED: see $out/$name.log"
  fi
done
p2p table "$out"
