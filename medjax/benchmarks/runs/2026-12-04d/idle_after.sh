#!/usr/bin/env bash
# Issue 24, session 12, AMD EPYC host, after 397b224 (XLA's kernel gradient on AMD): ResNet-50
# side by side with PyTorch, 2 rounds alternating, background run paused (SIGSTOP).
# (The SGAN and the CNN have no stride-1 convolution the change touches.)
set -u
cd ~/medjax-wt-s12 && export PYTHONPATH=$PWD
W=$HOME/medjax-runs/s12/after; mkdir -p $W/json
for round in 1 2; do
  echo "== round $round medjax $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python -m medjax.bench --models=resnet --image_sizes=128 --steps=3 --windows=3 --noaugment --out=$W/json/r128_$round.json 2>&1 | grep -E "^resnet|Error"
  python -m medjax.bench --models=resnet --image_sizes=50 --steps=5 --windows=3 --noaugment --out=$W/json/r50_$round.json 2>&1 | grep -E "^resnet|Error"
  echo "== round $round torch $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python -m medjax.benchmarks.torch_reference --models=resnet --image_size=128 --steps=3 --windows=3 --out=$W/json/torch128_$round.json 2>&1 | grep -E "^resnet|Error"
  python -m medjax.benchmarks.torch_reference --models=resnet --image_size=50 --steps=5 --windows=3 --out=$W/json/torch50_$round.json 2>&1 | grep -E "^resnet|Error"
done
echo "== convs 128 $(date +%T)"
python -m medjax.benchmarks.convs --image_size=128 --out=$W/json/convs128.json 2>&1 | grep -E "^- "
echo "DONE $(date +%T)"
