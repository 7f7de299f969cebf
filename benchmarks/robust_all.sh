#!/usr/bin/env bash
# Every cell of the robust P2P table (docs/robust.md), the most telling first, so that an interrupted grid has them:
# seed 0 of the core rows on every setting, the poison-rate sweep, seeds 1 and 2 of the core rows, the paired clean
# floor, then the mechanism rows on every seed.
# Usage: benchmarks/robust_all.sh OUT     (resumable: finished cells are skipped; run it again after an interruption)
set -euo pipefail
out=$1
# Rows that screen the same data the same way (screen, drop-select, default) compute the screening once.
export P2P_CACHE_DIR=${P2P_CACHE_DIR:-$out/.cache}
t="$(cd "$(dirname "$0")" && pwd)/robust_table.sh"
settings="sst2-badnets-minilm sst2-addsent-minilm sst2-hiddenkiller-minilm sst2-stylebkd-minilm sst2-badnets-tiny"
core="clean none paper-random default paper-oracle"
mechanisms="confirm screen drop drop-select oversample trusted-2pct"
rates="rate1-none rate1-default rate1-confirm rate5-none rate5-default rate5-confirm rate10-none rate10-default rate10-confirm"
for setting in $settings; do "$t" "$out" 0 "$setting" $core; done
"$t" "$out" 0 sst2-badnets-minilm $rates
for setting in $settings; do "$t" "$out" "1 2" "$setting" $core; done
# The clean floor on each attacked subsample. HiddenKiller's file has no clean original per row, and `tiny` trains on
# the whole split, so its paired floor is its clean floor.
for setting in sst2-badnets-minilm sst2-addsent-minilm sst2-stylebkd-minilm; do "$t" "$out" "0 1 2" "$setting" clean-paired; done
for setting in $settings; do "$t" "$out" "0 1 2" "$setting" $mechanisms; done
"$t" "$out" "1 2" sst2-badnets-minilm $rates
"$t" "$out" "0 1 2" sst2-badnets-minilm clean-paper
# For the record in docs/robust.md, seed 0 only: paper P2P at each rate, the ranked drop alone at 10%, other drop
# fractions, trusted sizes and ways of adding S.
"$t" "$out" 0 sst2-badnets-minilm rate1-paper rate5-paper rate10-paper rate10-drop trusted-1pct trusted-5pct \
  trusted-2pct-x10 default-rho50
for setting in sst2-badnets-minilm sst2-addsent-minilm; do "$t" "$out" 0 "$setting" drop20 default-append; done
# The second dataset (issue: p2p+'s settings must not be tuned to SST-2): the core rows on AG News.
for setting in agnews-badnets-minilm agnews-addsent-minilm; do "$t" "$out" "0 1 2" "$setting" $core; done
for setting in $settings agnews-badnets-minilm agnews-addsent-minilm; do p2p table "$out/$setting" > "$out/$setting.md"; done
