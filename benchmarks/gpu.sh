#!/usr/bin/env bash
# What a session lent a GPU runs, in one go (the device machine has torch, transformers, timm,
# typer, rich, pandas and pytest but not nndiag: it runs from the checkout):
#   bash benchmarks/gpu.sh [OUT [MODEL...]]   # logs and real_size.json's CUDA rows go to OUT
# 1. tests/test_cuda.py (skipped on CPU-only CI): --device cuda finds what the CPU finds, every
#    probe leaves the model and both RNGs untouched on the GPU, training probes under autocast.
# 2. The real-size default checks on the GPU beside a plain training step of the same model
#    (issue 27's goal: GPT-2 small's default check under 20 s on one H100).
# Merge the CUDA rows into benchmarks/results/real_size.json here with
#   python benchmarks/real_size/run.py --merge OUT/real_size.json
set -uo pipefail
out=${1:-${OUT:-/tmp/nndiag-gpu}}
shift || true
models=("${@:-gpt2_small sick_gpt2_small resnet50 sick_resnet50}")
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout 150 python3 -m pytest tests/test_cuda.py -p no:cacheprovider -rs 2>&1 | tee "$out/test_cuda.log"
for model in ${models[*]}; do  # one at a time: a timeout keeps the rest
    timeout 90 python3 benchmarks/real_size/run.py "$model" --device cuda --results "$out" 2>&1 \
        | tee -a "$out/real_size.log"
done
