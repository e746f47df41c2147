#!/usr/bin/env bash
# Issue 24 on an idle machine (background training paused by the caller with SIGSTOP):
# 1) XLA:CPU flags against the default, and PyTorch beside them, alternating (ResNet-50 at 128
#    and 50, the SGAN at 50; batch 20, float32, --noaugment); 2) startup.sh (compile cold/warm,
#    per-epoch overhead per model on the real LUNA16 patches). Code: ~/medjax-wt-bench.
set -u
cd ~/medjax-wt-bench && export PYTHONPATH=$PWD
W=$HOME/medjax-runs/bench7; mkdir -p $W/json
lscpu | grep -E "Model name|^CPU\(s\)|Thread|L2|L3" > $W/cpu.txt
for round in 1; do
  for f in "" "--xla_cpu_use_onednn=true" "--xla_cpu_experimental_onednn_custom_call=true" "--xla_cpu_prefer_vector_width=512"; do
    tag=$(echo "${f:-default}" | tr -c 'a-z0-9\n' '_')
    echo "== round $round flags [$f] $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    XLA_FLAGS="$f" python -m medjax.bench --models=resnet --image_sizes=128 --steps=3 --windows=3 --noaugment --out=$W/json/r128_${tag}_$round.json 2>&1 | grep -E "^resnet|Error"
    XLA_FLAGS="$f" python -m medjax.bench --models=resnet,sgan --image_sizes=50 --steps=5 --windows=3 --noaugment --out=$W/json/r50_${tag}_$round.json 2>&1 | grep -E "^resnet|^sgan|Error"
  done
  echo "== round $round torch $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python -m medjax.benchmarks.torch_reference --models=resnet --image_size=128 --steps=3 --windows=3 --out=$W/json/torch128_$round.json 2>&1 | grep -E "^resnet|Error"
  python -m medjax.benchmarks.torch_reference --models=resnet,sgan --image_size=50 --steps=5 --windows=3 --out=$W/json/torch50_$round.json 2>&1 | grep -E "^resnet|^sgan|Error"
done
echo FLAGS DONE $(date +%T)
python -m medjax.benchmarks.op_profile --models=resnet,sgan --image_sizes=50 --steps=3 --out=$W/json/ops50.json > $W/ops50.md 2>&1
python -m medjax.benchmarks.op_profile --models=resnet --image_sizes=128 --steps=2 --out=$W/json/ops128.json > $W/ops128.md 2>&1
echo OPS DONE $(date +%T)
bash $W/startup.sh
echo IDLE DONE $(date +%T)
