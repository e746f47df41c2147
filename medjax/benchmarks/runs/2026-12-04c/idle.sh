#!/bin/sh
# ResNet-50's stem and 3x3 convolutions, medjax vs XLA's convolution vs PyTorch, layer by layer
# (code 67d95a3; nothing else running on the machine).
set -e
cd "$(dirname "$0")"
python -m medjax.benchmarks.convs --image_size=50 --out=convs50.json
python -m medjax.benchmarks.convs --image_size=128 --out=convs128.json
