#!/usr/bin/env bash
# Issue 24, session 10, idle machine (nothing else running): side by side medjax vs PyTorch
# (2 rounds, alternating), op profiles, then per-model real-data runs with a cold and a warm
# persistent cache (epoch overhead, compilation) and one full 100-epoch CNN run. Code: 107bd4c.
set -u
cd ~/medjax-wt-s10 && export PYTHONPATH=$PWD
W=$HOME/medjax-runs/s10/win; mkdir -p $W/json
lscpu | grep -E "Model name|^CPU\(s\)|Thread|L2|L3" > $W/cpu.txt
for round in 1 2; do
  echo "== round $round medjax $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python -m medjax.bench --models=resnet --image_sizes=128 --steps=3 --windows=3 --noaugment --out=$W/json/r128_$round.json 2>&1 | grep -E "^resnet|Error"
  python -m medjax.bench --models=resnet,sgan,cnn --image_sizes=50 --steps=5 --windows=3 --noaugment --out=$W/json/r50_$round.json 2>&1 | grep -E "^resnet|^sgan|^cnn|Error"
  echo "== round $round torch $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  python -m medjax.benchmarks.torch_reference --models=resnet --image_size=128 --steps=3 --windows=3 --out=$W/json/torch128_$round.json 2>&1 | grep -E "^resnet|Error"
  python -m medjax.benchmarks.torch_reference --models=resnet,sgan,cnn --image_size=50 --steps=5 --windows=3 --out=$W/json/torch50_$round.json 2>&1 | grep -E "^resnet|^sgan|^cnn|Error"
done
echo "SIDE BY SIDE DONE $(date +%T)"
python -m medjax.benchmarks.op_profile --models=resnet,sgan --image_sizes=50 --steps=3 --out=$W/json/ops50.json > $W/ops50.md 2>&1
python -m medjax.benchmarks.op_profile --models=resnet --image_sizes=128 --steps=2 --out=$W/json/ops128.json > $W/ops128.md 2>&1
echo "OPS DONE $(date +%T)"
D=/work/shared/data/luna16_patches
rm -rf $W/cache; export MEDJAX_JAX_CACHE=$W/cache
for m in cnn dbn resnet sgan; do
  case $m in
    cnn) extra="--config.num_epochs=3";;
    dbn) extra="--config.num_epochs=3 --config.dbn.pretrain_epochs=1";;
    resnet) extra="--config.num_epochs=2";;
    sgan) extra="--config.num_epochs=1";;
  esac
  for t in cold warm; do
    rm -rf $W/runs/$m-$t
    /usr/bin/time -f "$m $t wall %e s" python -m experiments.luna_$m --config.data.dir=$D $extra --workdir=$W/runs/$m-$t 2>&1 | grep -E "compilation|epoch [0-9]+/[0-9]+: .*val|wall"
  done
done
rm -rf $W/runs/cnn-100
/usr/bin/time -f "cnn 100 epochs wall %e s" python -m experiments.luna_cnn --config.data.dir=$D --workdir=$W/runs/cnn-100 2>&1 | grep -E "compilation|epoch 100/|wall"
echo "IDLE DONE $(date +%T)"
