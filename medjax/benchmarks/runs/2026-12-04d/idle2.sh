#!/usr/bin/env bash
# Issue 24, session 12, AMD EPYC host: ResNet-50's matmuls and spatial convolutions vs PyTorch,
# background run paused (SIGSTOP). Code: 4b3f1ef (same layers as 7600bfc).
set -u
cd /work/main && export PYTHONPATH=$PWD
W=$HOME/medjax-runs/s12/win; mkdir -p $W/json
for s in 128 50; do
  echo "== gemm $s $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python -m medjax.benchmarks.gemm --image_size=$s --out=$W/json/gemm$s.json 2>&1 | grep -v -i warn | tail -8
  echo "== convs $s $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python -m medjax.benchmarks.convs --image_size=$s --out=$W/json/convs$s.json 2>&1 | grep -v -i warn | tail -8
done
echo "DONE $(date +%T)"
