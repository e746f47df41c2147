#!/usr/bin/env bash
# Issue 24, session 10, idle machine, code c77f54f: the 100-epoch CNN run with best epochs held
# in memory between saves; the gemm benchmark at 128 and 50 px; the compilation cache's
# threshold (1 s, the default, and 0 s) on the DBN and the CNN, cold and warm.
set -u
cd ~/medjax-wt-s10b && export PYTHONPATH=$PWD
W=$HOME/medjax-runs/s10/win2; D=/work/shared/data/luna16_patches; mkdir -p $W/json $W/runs
export MEDJAX_JAX_CACHE=$HOME/medjax-runs/s10/win/cache   # warm from the first window
rm -rf $W/runs/cnn-100
/usr/bin/time -f "cnn 100 epochs wall %e s" python -m experiments.luna_cnn --config.data.dir=$D --workdir=$W/runs/cnn-100 2>&1 | grep -E "compilation|epoch 100/|wall"
echo "CNN DONE $(date +%T)"
python -m medjax.benchmarks.gemm --image_size=128 --out=$W/json/gemm128.json > $W/gemm128.md 2>&1
python -m medjax.benchmarks.gemm --image_size=50 --out=$W/json/gemm50.json > $W/gemm50.md 2>&1
echo "GEMM DONE $(date +%T)"
for thr in 1.0 0.0; do
  export MEDJAX_JAX_CACHE_MIN_SECONDS=$thr MEDJAX_JAX_CACHE=$W/cache-$thr
  rm -rf $MEDJAX_JAX_CACHE
  for m in dbn cnn; do
    case $m in
      cnn) extra="--config.num_epochs=3";;
      dbn) extra="--config.num_epochs=3 --config.dbn.pretrain_epochs=1";;
    esac
    for t in cold warm; do
      rm -rf $W/runs/$m-$thr-$t
      /usr/bin/time -f "$m thr=$thr $t wall %e s" python -m experiments.luna_$m --config.data.dir=$D $extra --workdir=$W/runs/$m-$thr-$t 2>&1 | grep -E "compilation in|wall"
    done
  done
  echo "cache $thr: $(du -sh $MEDJAX_JAX_CACHE | cut -f1), $(ls $MEDJAX_JAX_CACHE | wc -l) entries"
done
echo "IDLE DONE $(date +%T)"
