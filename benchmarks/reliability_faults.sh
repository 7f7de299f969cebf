#!/usr/bin/env bash
# Reruns each fault of the reliability review with today's `p2p` and prints every command with what it printed
# (stdout, then stderr) and its exit status, as Markdown. Tiny models only: a few minutes on a laptop CPU.
#   P2P_DATA_DIR=../shared/data benchmarks/reliability_faults.sh > reliability_faults.md
set -uo pipefail
: "${P2P_DATA_DIR:?set P2P_DATA_DIR to the datasets folder}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 COLUMNS=200
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
TINY=(--model tiny --set data.train_size=160 --set train.epochs=1 --set train.batch_size=16
      --set model.tiny_hidden_size=64 --set model.tiny_layers=2 --set model.tiny_vocab_size=600
      --set model.max_length=64 --set defense.screen=[lexical])

show() {  # show TITLE -- COMMAND...: the command, its stdout and stderr (paths shortened), its exit status
  local title=$1; shift 2
  echo "### $title"; echo; echo '```'; echo "\$ ${*//$work\//}"
  "$@" > out.txt 2> err.txt; local rc=$?
  sed "s#$work/##g" out.txt | head -5; grep -v '^\s*$' err.txt | grep -v '━' | sed "s#$work/##g" | tail -3
  echo "[exit $rc]"; echo '```'; echo
}

rows() {  # rows N FILE [LABEL...]: N SST-2 training rows with their labels, or with the labels given in turn
  local n=$1 file=$2; shift 2
  python3 - "$P2P_DATA_DIR/sst2/train.jsonl" "$n" "$file" "$@" <<'EOF'
import itertools, json, sys
source, n, out, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3], [int(x) for x in sys.argv[4:]]
with open(source) as f, open(out, "w") as w:
    cycle = itertools.cycle(labels) if labels else None
    for line in itertools.islice(f, n):
        row = json.loads(line)
        w.write(json.dumps({"text": row["sentence"] if "sentence" in row else row["text"],
                            "label": next(cycle) if cycle else row["label"]}) + "\n")
EOF
}

echo "## 1. defend into a folder that holds another model"
rows 200 a.jsonl; rows 200 b.jsonl 1 0
show "first defend" -- p2p defend --data a.jsonl --out model "${TINY[@]}"
show "other data, same folder" -- p2p defend --data b.jsonl --out model "${TINY[@]}"
show "the same command again" -- p2p defend --data a.jsonl --out model "${TINY[@]}"
show "--force" -- p2p defend --data b.jsonl --out model "${TINY[@]}" --force

echo "## 3. degenerate training data"
rows 1 one.jsonl; rows 2 two.jsonl; rows 200 single.jsonl 1; rows 200 gap.jsonl 0 5; rows 200 range.jsonl 0 1 2
show "one row" -- p2p defend --data one.jsonl --out d1 "${TINY[@]}"
show "two rows" -- p2p defend --data two.jsonl --out d2 "${TINY[@]}"
show "a single class" -- p2p defend --data single.jsonl --out d3 "${TINY[@]}"
show "labels {0, 5}" -- p2p defend --data gap.jsonl --out d4 "${TINY[@]}"
show "label 2 for a two-label task" -- p2p defend --data range.jsonl --task sentiment --out d5 "${TINY[@]}"
for d in d1 d2 d3 d4 d5; do [[ -e $d ]] && echo "left behind: $d"; done

echo "## 4. empty input"
: > empty.jsonl; printf '\n  \n' > blank.jsonl; mkdir -p gsm/gsm8k; : > gsm/gsm8k/train.jsonl
cp "$P2P_DATA_DIR/gsm8k/test.jsonl" gsm/gsm8k/
show "scan an empty file" -- p2p scan --data empty.jsonl
show "scan a blank-only file" -- p2p scan --data blank.jsonl
show "defend an empty file" -- p2p defend --data empty.jsonl --out e1 "${TINY[@]}"
[[ -e e1 ]] && echo "left behind: e1"
printf 'defense: {name: none}\ndata: {dataset: gsm8k, train_size: 10}\nattack: {name: badchain}\n' > gsm.yaml
show "an empty GSM8K training file" -- env P2P_DATA_DIR="$work/gsm" p2p run gsm.yaml --out g1 --set model.name=tiny

echo "## 5. small crashes and formatting"
printf '\xef\xbb\xbf' > bom.jsonl; cat a.jsonl >> bom.jsonl
show "a JSONL file that starts with a byte-order mark" -- p2p scan --data bom.jsonl
printf '{"text": "fine", "label": "[/x]"}\n' > markup.jsonl
show "a label holding rich markup" -- p2p defend --data markup.jsonl --task sentiment --out m1 "${TINY[@]}"
show "broken YAML in --set" -- p2p defend --data a.jsonl --out m2 "${TINY[@]}" --set 'train.epochs=['
show "predict, --input missing" -- p2p predict model --input nowhere.jsonl
show "predict, --input a folder" -- p2p predict model --input model
cp -r model pickled; python3 -c "
import torch, sys; from safetensors.torch import load_file
torch.save(load_file('pickled/model/model.safetensors'), 'pickled/model/pytorch_model.bin')"
rm pickled/model/model.safetensors
show "predict from a folder of pickled weights" -- p2p predict pickled --text fine
long=$(printf 'x%.0s' $(seq 300))
show "a long error, stderr a file (one line, not wrapped at 80 columns)" -- p2p scan --data "$long.jsonl"
show "predict: stdout is strict JSON lines" -- p2p predict model --text "a fine film" --text "dull"

echo "## 6. smaller faults"
show "a run refused by validation" -- p2p defend --data gap.jsonl --out v1 "${TINY[@]}"
show "the corrected command, same folder" -- p2p defend --data a.jsonl --out v1 "${TINY[@]}"
show "model.kind=encoder for tiny" -- p2p defend --data a.jsonl --out k1 "${TINY[@]}" --set model.kind=encoder
show "a folder given as the data file" -- p2p scan --data model
printf 'review,score\nfine,1\n' > cols.csv
show "a CSV file without a label column" -- p2p scan --data cols.csv
printf 'text,label\n"fine,1\n' > broken.csv
show "a CSV file with an unclosed quote" -- p2p scan --data broken.csv
echo "The kill tests (kill -9 during data preparation, mid-epoch, while a checkpoint is written, during evaluation;"
echo "then the same command again): \`python -m pytest tests/test_kills.py -v\`."
