#!/usr/bin/env bash
# Issue 24, session 12, AMD EPYC host: side by side medjax vs PyTorch (2 rounds, alternating),
# with the background ResNet-50 run paused (SIGSTOP) for the duration. Code: 7600bfc (the worktree
# ~/medjax-wt-r100s; CODE= and TAG= choose another worktree and output folder).
set -u
cd ${CODE:-~/medjax-wt-r100s} && export PYTHONPATH=$PWD
W=$HOME/medjax-runs/s12/${TAG:-win}; mkdir -p $W/json
lscpu | grep -E "Model name|^CPU\(s\)|Thread|L2|L3|Flags" > $W/cpu.txt
for round in 1 2; do
  echo "== round $round medjax $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python -m medjax.bench --models=resnet --image_sizes=128 --steps=3 --windows=3 --noaugment --out=$W/json/r128_$round.json 2>&1 | grep -E "^resnet|Error"
  python -m medjax.bench --models=resnet,sgan,cnn --image_sizes=50 --steps=5 --windows=3 --noaugment --out=$W/json/r50_$round.json 2>&1 | grep -E "^resnet|^sgan|^cnn|Error"
  echo "== round $round torch $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python -m medjax.benchmarks.torch_reference --models=resnet --image_size=128 --steps=3 --windows=3 --out=$W/json/torch128_$round.json 2>&1 | grep -E "^resnet|Error"
  python -m medjax.benchmarks.torch_reference --models=resnet,sgan,cnn --image_size=50 --steps=5 --windows=3 --out=$W/json/torch50_$round.json 2>&1 | grep -E "^resnet|^sgan|^cnn|Error"
done
echo "SIDE BY SIDE DONE $(date +%T)"
