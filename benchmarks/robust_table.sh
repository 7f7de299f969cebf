#!/usr/bin/env bash
# Robust P2P table, one setting at a time: every row of benchmarks/robust_rows.txt (or the rows named) x seeds.
# Usage: benchmarks/robust_table.sh OUT "SEEDS" SETTING [ROW ...]
#   e.g. benchmarks/robust_table.sh runs/robust "0 1 2" sst2-badnets-minilm none paper-random default
# Each cell is one `p2p run` into OUT/SETTING/ROW/seedS (finished cells are skipped, interrupted ones resume);
# the command of each cell is printed before it runs. Ends with the Markdown table in OUT/SETTING.md.
# Other tables reuse it: P2P_CONFIGS names the folder under configs/ (default robust), P2P_ROWS the rows file (default
# benchmarks/robust_rows.txt), and P2P_SET adds overrides to every cell (e.g. "model.name=smollm2"; use another OUT).
set -euo pipefail
out=$1; seeds=$2; setting=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
configs=${P2P_CONFIGS:-robust}
rows_file=${P2P_ROWS:-$here/robust_rows.txt}
config="$here/../configs/$configs/$setting.yaml"
[[ -f $config ]] || { echo "no config $config" >&2; exit 2; }
rows=("$@")
if [[ ${#rows[@]} -eq 0 ]]; then
  mapfile -t rows < <(grep -v '^#' "$rows_file" | awk 'NF {print $1}')
fi
extra=()
for o in ${P2P_SET:-}; do extra+=(--set "$o"); done
for row in "${rows[@]}"; do
  line=$(awk -v r="$row" '$1 == r' "$rows_file")
  [[ -n $line ]] || { echo "no row '$row' in $rows_file" >&2; exit 2; }
  sets=("${extra[@]}")
  for o in ${line#"$row"}; do sets+=(--set "$o"); done
  for seed in $seeds; do
    dir="$out/$setting/$row/seed$seed"
    echo "p2p run configs/$configs/$setting.yaml ${sets[*]} --set seed=$seed --out $dir"
    mkdir -p "$(dirname "$dir")"
    p2p run "$config" "${sets[@]}" --set "seed=$seed" --out "$dir" > "$dir.log" 2>&1 || echo "  FAILED: see $dir.log" >&2
  done
done
p2p table "$out/$setting" | tee "$out/$setting.md"
