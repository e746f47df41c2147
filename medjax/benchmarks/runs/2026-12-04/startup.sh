#!/usr/bin/env bash
# Issue 24 items 3-4 on an idle machine: per model, a real-data run (LUNA16 patches) with an
# empty persistent compilation cache ("cold"), then the same run again ("warm"): compile_time and
# epoch_time of each results.json. Code: the worktree's commit.
set -u
cd ~/medjax-wt-bench && export PYTHONPATH=$PWD
D=/work/shared/data/luna16_patches; W=$HOME/medjax-runs/bench7
rm -rf $W/cache; export MEDJAX_JAX_CACHE=$W/cache
for m in cnn dbn resnet sgan; do
  case $m in
    cnn) extra="--config.num_epochs=3";;
    dbn) extra="--config.num_epochs=3 --config.dbn.pretrain_epochs=1";;
    resnet) extra="--config.num_epochs=2";;
    sgan) extra="--config.num_epochs=1";;
  esac
  for t in cold warm; do
    rm -rf $W/$m-$t
    /usr/bin/time -f "$m $t wall %e s" python -m experiments.luna_$m --config.data.dir=$D $extra --workdir=$W/$m-$t 2>&1 | grep -E "compilation|epoch [0-9]+/[0-9]+: .*val|wall"
  done
done
echo STARTUP DONE
