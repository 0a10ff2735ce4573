#!/usr/bin/env bash
# One short GPU check for a CUDA machine without network (under 8 minutes):
# MoCo ECAPA-512 training steps with bf16 autocast at batch 128 x 2 s crops:
# crops/s, GPU memory, MoCo/supervised step ratio, loader ratio (0/1/2 workers,
# disk and memory-mapped cache), extraction throughput.
#
#   bash benchmarks/gpu_check.sh fetch   # here, with a package registry: wheels -> .whl/
#   bash benchmarks/gpu_check.sh         # on the GPU machine, from the repository root
#
# The GPU machine needs torch/torchaudio with CUDA; speechbrain, hyperpyyaml,
# ruamel.yaml and soundfile are installed from .whl/ (carried with the tree)
# into /tmp/site when they are missing. Results: benchmarks/results/gpu.{md,json}
# (and under $OUT when set, so a remote runner can bring them back).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "fetch" ]; then
    mkdir -p .whl
    for spec in speechbrain==1.1.2 hyperpyyaml==1.2.3 ruamel.yaml==0.18.17 ruamel.yaml.clib==0.2.15 \
                soundfile==0.14.0 cffi==2.1.1 pycparser==3.12; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform any -d .whl "$spec"
    done
    ls -l .whl
    exit 0
fi

if ! python3 -c "import speechbrain, hyperpyyaml, soundfile" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
timeout 420 python3 benchmarks/speed.py --device=cuda:0 --precision=bf16 --batch_size=128 --channels=512 \
    --steps=10 --rounds=2 --sections=step,loader,extract --out=benchmarks/results/gpu
if [ -n "${OUT:-}" ]; then cp benchmarks/results/gpu.md benchmarks/results/gpu.json "$OUT"/; fi
