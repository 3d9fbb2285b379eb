#!/usr/bin/env bash
# The GPU figures of README's Benchmarks in one run, sized for a fresh GPU machine and about
# 12 minutes: a CUDA torch and sdfarm in .venv-gpu (skipped when PYTHON already has a CUDA
# torch), builtin:sd15 and builtin:sdxl built into a scratch model folder, then
# bench/overhead.py on each: sdfarm against a plain diffusers loop writing the same PNGs,
# unbatched and batched. Prints the figures and writes them to ${OUT:-bench-gpu}/.
#
#   bash bench/gpu.sh                 # installs torch==2.13.0 from PyPI (the CUDA build on Linux)
#   PYTHON=/opt/venv/bin/python bash bench/gpu.sh    # use an environment that has torch already
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench-gpu}
mkdir -p "$out"
export SDFARM_MODEL_DIR=${SDFARM_MODEL_DIR:-$out/models}

python=${PYTHON:-}
if [ -z "$python" ] || ! "$python" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  python3 -m venv .venv-gpu
  python=.venv-gpu/bin/python
  "$python" -m pip install -q --upgrade pip
  "$python" -m pip install -q torch==2.13.0
fi
"$python" -m pip install -q -e .
"$python" -m pip install -q --no-deps open-clip-torch==3.3.0
"$python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0))' \
  | tee "$out/device.txt"

# Builds are timed apart (the first use of a built-in model builds it; ~2 GB and ~7 GB in fp16).
"$python" - <<'PY' | tee "$out/build.txt"
import os, time
from pathlib import Path
from sdfarm.worker.builtin import ensure_builtin
for name in ("sd15", "sdxl"):
    t = time.perf_counter()
    ensure_builtin(name, Path(os.environ["SDFARM_MODEL_DIR"]))
    print(f"builtin:{name} built in {time.perf_counter() - t:.1f} s")
PY

# 20 steps at each model's own size; the batched runs at 4 (sd15) and 2 (sdxl) images a pass.
"$python" bench/overhead.py --device cuda --model builtin:sd15 --size 512 --steps 20 \
  --images 32 --batch 4 --repeats 2 | tee "$out/overhead-sd15.txt"
"$python" bench/overhead.py --device cuda --model builtin:sdxl --size 1024 --steps 20 \
  --images 8 --batch 2 --repeats 1 | tee "$out/overhead-sdxl.txt"
