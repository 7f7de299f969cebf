#!/usr/bin/env bash
# Every cell of the security table (docs/security.md), the most telling first, so that an interrupted grid has them:
# seed 0 of the core rows on the adaptive attacks, official against secret on plain BadNets (MiniLM and `tiny`), the
# SmolLM2 setting, the poison without its cue and the rate sweep, then seeds 1 and 2. Cells run through
# robust_table.sh. p2p-guess's clean floor is p2p-aware's (at rate 0 both write the same rows), so it is run once.
# Usage: benchmarks/security_all.sh OUT     (resumable: finished cells are skipped; run it again after an interruption)
# Then: python benchmarks/security_summary.py OUT
set -euo pipefail
out=$1
# p2p+ with either trigger screens the same data the same way: the screening is computed once.
export P2P_CACHE_DIR=${P2P_CACHE_DIR:-$out/.cache}
here="$(cd "$(dirname "$0")" && pwd)"
export P2P_ROWS="$here/security_rows.txt"
t="$here/robust_table.sh"
adaptive="sst2-p2paware-badnets-minilm sst2-p2paware-addsent-minilm sst2-p2pguess-badnets-minilm"
plain="sst2-badnets-minilm sst2-badnets-tiny"
core="none p2p-official p2p-secret p2p+-secret p2p+-official"
triggers="clean none p2p-official p2p-secret"
nocue="nocue-none nocue-p2p-official nocue-p2p-secret nocue-p2p+-secret"
rates="rate1-none rate1-p2p-official rate1-p2p-secret rate5-none rate5-p2p-official rate5-p2p-secret rate5-p2p+-secret"
for seeds in 0 "1 2"; do
  for setting in $adaptive; do
    floor=clean; [[ $setting == sst2-p2pguess-* ]] && floor=""
    P2P_CONFIGS=security "$t" "$out" "$seeds" "$setting" $floor $core
  done
  for setting in $plain; do P2P_CONFIGS=robust "$t" "$out" "$seeds" "$setting" $triggers; done
  # SmolLM2: its clean floor is docs/llm.md's BadNets floor (the same rows, model and training at rate 0).
  P2P_CONFIGS=security "$t" "$out" "$seeds" sst2-p2paware-badnets-smollm2 none p2p-official p2p-secret p2p+-secret
  for setting in $adaptive; do P2P_CONFIGS=security "$t" "$out" "$seeds" "$setting" $nocue; done
  P2P_CONFIGS=security "$t" "$out" "$seeds" sst2-p2paware-badnets-minilm $rates
done
