#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a machine that has torch, transformers, peft and accelerate but not the
# rest of this package's dependencies and no registry: wheels in WHEELS (default .whl/) are installed into a private
# folder first, if there are any. On a machine without CUDA it runs what the CPU can and says what it skipped.
# Usage: bash benchmarks/gpu_check.sh [OUT.json]     (within 8 minutes on one H100)
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=${WHEELS:-.whl}
if compgen -G "$wheels/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/p2p-site "$wheels"/*.whl
  export PYTHONPATH="/tmp/p2p-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" P2P_DATA_DIR="${P2P_DATA_DIR:-$(cd .. && pwd)/shared/data}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
timeout 480 python3 benchmarks/gpu_check.py ${1:+--out "$1"}
