#!/usr/bin/env bash
# usage: flags.sh MODEL SIZE flagset...
m=$1; s=$2; shift 2
for f in "$@"; do
  XLA_FLAGS="$f" PYTHONPATH=/work/main python ~/medjax-runs/s10/var.py $m $s "pass" 2>&1 | grep -v Warn | sed "s|^pass *|$m $s [$f] |"
done
