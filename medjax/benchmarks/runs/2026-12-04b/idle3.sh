#!/usr/bin/env bash
# Issue 24, session 10, idle machine, code 6402782 (held bests, one weights check an epoch,
# every program cached): the 100-epoch CNN run on the LUNA16 patches, warm cache.
set -u
cd ~/medjax-wt-s10c && export PYTHONPATH=$PWD MEDJAX_JAX_CACHE=$HOME/medjax-runs/s10/win3/cache
D=/work/shared/data/luna16_patches
python -m experiments.luna_cnn --config.data.dir=$D --config.num_epochs=2 --workdir=/tmp/warmcache
/usr/bin/time -f "cnn 100 wall %e s" python -m experiments.luna_cnn --config.data.dir=$D \
    --workdir=$HOME/medjax-runs/s10/win3/cnn-100
