#!/usr/bin/env bash
# Every cell of the robust P2P table (docs/robust.md), seed 0 everywhere first, then seeds 1 and 2.
# Usage: benchmarks/robust_all.sh OUT     (resumable: finished cells are skipped; run it again after an interruption)
set -euo pipefail
out=$1
# Rows that screen the same data the same way (screen, drop, default) compute the screening once.
export P2P_CACHE_DIR=${P2P_CACHE_DIR:-$out/.cache}
t="$(cd "$(dirname "$0")" && pwd)/robust_table.sh"
main="clean none paper-random paper-oracle screen drop oversample trusted-2pct default"
rates="rate1-none rate1-paper rate1-default rate5-none rate5-paper rate5-default rate10-none rate10-paper rate10-default"
for seed in 0 1 2; do
  "$t" "$out" "$seed" sst2-badnets-minilm $main
  for setting in sst2-addsent-minilm sst2-hiddenkiller-minilm sst2-stylebkd-minilm; do
    "$t" "$out" "$seed" "$setting" $main
  done
  "$t" "$out" "$seed" sst2-badnets-minilm $rates trusted-1pct trusted-5pct trusted-2pct-x10
  if [ "$seed" = 0 ]; then  # the alternative drop fraction, for the record in docs/robust.md
    for setting in sst2-badnets-minilm sst2-addsent-minilm; do "$t" "$out" 0 "$setting" drop20; done
  fi
  "$t" "$out" "$seed" sst2-badnets-tiny $main
done
for setting in sst2-badnets-minilm sst2-addsent-minilm sst2-hiddenkiller-minilm sst2-stylebkd-minilm sst2-badnets-tiny; do
  p2p table "$out/$setting" > "$out/$setting.md"
done
