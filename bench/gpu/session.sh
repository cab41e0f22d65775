#!/usr/bin/env bash
# On a lent GPU machine (bench/gpu/prepare.sh first, here), calls of the device tool on one warm machine:
#   run(command="bash bench/gpu/session.sh tests", carry=[".whl-tests"], timeout_s=540)   # issue 22
#   run(command="bash bench/gpu/session.sh bench", carry=[".whl-bench"], timeout_s=420)   # issue 21, per step
#   run(command="bash bench/gpu/session.sh e2e", carry=[".whl-bench"], timeout_s=420)     # issue 21, end to end
# Everything it prints and writes under $OUT comes back; the numbers go to BENCHMARKS.md with the date and the GPU.
# The dry run here, on the CPU at tiny sizes (python3 = .venv's):
#   PATH=$PWD/.venv/bin:$PATH DRY_RUN=1 bash bench/gpu/session.sh bench
set -uo pipefail
what=${1:?usage: session.sh tests|bench|e2e}
OUT=${OUT:-/tmp/vdmkit-gpu}
mkdir -p "$OUT"
wheels=.whl-${what/e2e/bench}
device=cuda bench_args=()
[ -n "${DRY_RUN:-}" ] && device=cpu bench_args=(--tiny --device cpu --repeats 2) LATENT_STEPS=3 \
    DEVICE_STEPS=2
[ -n "${DRY_RUN:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$wheels"/*.whl \
    || { echo "could not install $wheels (run bench/gpu/prepare.sh here and carry $wheels)"; exit 1; }
export PYTHONPATH=$PWD/src:$PWD:$PWD/bench:/tmp/site PYTHONUNBUFFERED=1 VDMKIT_CACHE=/tmp/vdmkit-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi-$what.txt"
python3 -c "import torch, vdmkit; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
                                        'vdmkit', vdmkit.__version__)"
case "$what" in
tests)
    # the gpu-marker tests (train, resume across devices, CPU-GPU bound, CLI, CUDA graphs), their prints shown
    timeout 300 python3 -m pytest -m gpu tests/test_gpu.py -q -rP -p no:cacheprovider 2>&1 | tee "$OUT/gpu-tests.log"
    # configs/shapes.yaml training steps/s on the GPU (0 and 2 data workers)
    timeout 90 python3 bench/bench_devices.py --device "$device" --steps "${DEVICE_STEPS:-30}" --workers 0 2 \
        --setups shapes 2>&1 | tee "$OUT/devices.jsonl"
    # the 64x64 latent recipe: a frame VAE, then the latent UNet on it, then a sampled video
    timeout 120 python3 bench/bench_latent_recipe.py --device "$device" --steps "${LATENT_STEPS:-60}" 2>&1 \
        | tee "$OUT/latent.jsonl"
    ;;
bench)
    timeout 360 python3 bench/bench_gpu.py --json "$OUT/gpu.jsonl" "${bench_args[@]}" 2>&1 | tee "$OUT/bench-gpu.log"
    ;;
e2e)
    # a ModelScope folder of the real configs built on the GPU (7 GB, removed after), both libraries end to end
    timeout 360 python3 bench/bench_gpu.py --only e2e --json "$OUT/e2e.jsonl" "${bench_args[@]}" 2>&1 \
        | tee "$OUT/e2e.log"
    ;;
*)
    echo "usage: session.sh tests|bench|e2e"; exit 2
    ;;
esac
