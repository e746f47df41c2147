import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from medjax import bench
from medjax.flops import count_flops
from medjax.models import ResNet50


def test_flops_of_a_dense_layer_and_a_convolution():
  x = jnp.zeros((4, 10))
  w = jnp.zeros((10, 3))
  assert count_flops(lambda x, w: x @ w, x, w) == 2 * 4 * 10 * 3
  img = jnp.zeros((2, 8, 8, 5))
  k = jnp.zeros((3, 3, 5, 7))
  conv = lambda img, k: jax.lax.conv_general_dilated(img, k, (2, 2), "SAME",
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  assert count_flops(conv, img, k) == 2 * (2 * 4 * 4 * 7) * (3 * 3 * 5)


def test_resnet50_forward_flops_match_the_published_4_1_gmacs():
  model = ResNet50(num_classes=1000)
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape)))
  assert count_flops(lambda v, x: model.apply(v, x), v, x) / 2 == pytest.approx(4.09e9, rel=0.01)


@pytest.mark.parametrize("mode,seeds", [("step", "1"), ("scan", "2")])
def test_bench_writes_json(tmp_path, mode, seeds):
  out = tmp_path / "bench.json"
  bench.main(["--models=cnn", "--model-size=tiny", "--image-sizes=40", "--steps=4",
              "--windows=2", "--scan-steps=4", f"--mode={mode}", f"--seeds={seeds}",
              f"--out={out}"])
  data = json.loads(out.read_text())
  (r,) = data["results"]
  assert r["mode"] == mode and r["seeds"] == int(seeds)
  assert r["ms_per_step"] > 0 and r["images_per_second"] > 0
  assert r["ms_per_step_min"] <= r["ms_per_step"] <= r["ms_per_step_max"]
  assert r["gflops_per_image"] > 0 and r["compile_seconds"] > 0
  assert data["environment"]["backend"] == "cpu"


def test_training_path_never_imports_tensorflow():
  code = ("import sys, medjax.bench, medjax.train.loop, experiments.luna_resnet, "
          "experiments.luna_cnn; bad = [m for m in ('tensorflow', 'SimpleITK', "
          "'tensorflow_datasets') if m in sys.modules]; assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_input_pipeline_timing_reads_real_batches():
  r = bench.bench_input_pipeline(None, batch_size=20, seconds=0.5)
  assert r["input_pipeline"] == "tf.data" and r["batch_size"] == 20
  assert r["images_per_second"] > 0
