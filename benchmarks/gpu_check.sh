#!/usr/bin/env bash
# The GPU numbers of issues 11 and 12 in one call on a lent CUDA machine (see README, "Measured results").
# Wheels of the dependencies its image lacks travel in .whl/ (git-ignored), fetched here first:
#   for p in kornia==0.9.0 kornia_rs==0.2.0 omegaconf==2.4.0 antlr4-python3-runtime==4.13.2; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $p; done
# then, with the device tool: run `bash benchmarks/gpu_check.sh [STEP ...]` carrying .whl (all steps: about
# 4 minutes on an H200; name steps to run only those, e.g. `kernel update byol_r50_neuron`).
# Output: the terminal, and $OUT/*.txt when OUT is set.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
only=" $* "  # step names to run (default: all)
step() {  # name, timeout seconds, command...
    local name=$1 limit=$2; shift 2
    if [ "$only" != "  " ] && [[ "$only" != *" $name "* ]]; then return; fi
    echo "=== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
step kernel 120 python3 benchmarks/gpu_kernel_check.py
step update 90 python3 benchmarks/teacher_update.py --device cuda --repeats 50
step update_torch 60 python3 benchmarks/teacher_update.py --device cuda --repeats 50 --kernel torch
# the tests that skip without CUDA (sync-free augmentation dispatch under CUDA's sync debug mode)
step cuda_tests 90 python3 -m pytest -q -p no:cacheprovider tests/augment/test_ops.py tests/augment/test_recipes.py \
    tests/core/test_fast.py -k "cuda or autocast"
for g in neuron channel layer; do
    step "byol_r50_$g" 90 python3 benchmarks/train_throughput.py --recipe byol_sts_imagenet --image-size 224 \
        --batch-size 256 --steps 10 --granularity $g
done
step byol_r50_tma 90 python3 benchmarks/train_throughput.py --recipe byol_sts_imagenet --image-size 224 \
    --batch-size 256 --steps 10 --granularity layer --preserve-prob 0
step corruption 90 python3 benchmarks/corruption.py --parts gpu --threads 8
