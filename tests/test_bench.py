import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from medjax import cli, platform
from medjax.benchmarks import pipeline, rbm, step, torch_reference
from medjax.benchmarks.flops import count_flops
from medjax.errors import UserError
from medjax.models import Discriminator, Generator, ResNet50, sgan
from medjax.models.layers import Conv


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


def test_dashed_flag_names_become_absl_names_and_values_stay():
  assert cli.normalize_argv(
      ["--batch-sizes=20,256", "--image-sizes", "50", "--noinput-pipeline", "--out=a-b.json",
       "-1", "--models=cnn", "--", "--keep-me"]) == [
      "--batch_sizes=20,256", "--image_sizes", "50", "--noinput_pipeline", "--out=a-b.json",
      "-1", "--models=cnn", "--", "--keep-me"]


@pytest.mark.slow
@pytest.mark.parametrize("mode,seeds,models", [("step", "1", "cnn,sgan"), ("scan", "2", "cnn")])
def test_step_benchmark_writes_json(tmp_path, mode, seeds, models):
  out = tmp_path / "bench.json"
  # The README's dashed spellings and absl's underscore names both work.
  results = step.main([
      f"--models={models}", "--model-size=tiny", "--image_sizes=40", "--steps=4", "--windows=2",
      "--scan-steps=4", f"--mode={mode}", f"--seeds={seeds}", f"--out={out}"])
  data = json.loads(out.read_text())
  assert data["results"] == results
  assert data["environment"]["cpu"] and data["flags"]["mode"] == mode
  assert [r["model"] for r in results] == models.split(",")
  for r in results:
    assert r["mode"] == mode and r["seeds"] == (1 if r["model"] == "sgan" else int(seeds))
    assert r["ms_per_step"] > 0 and r["images_per_second"] > 0
    assert r["ms_per_step_min"] <= r["ms_per_step"] <= r["ms_per_step_max"]
    assert r["gflops_per_image"] > 0 and r["compile_seconds"] > 0
  assert data["environment"]["backend"] == "cpu"
  assert data["flags"]["scan_steps"] == 4 and data["flags"]["model_size"] == "tiny"


def test_bad_flags_are_user_errors():
  with pytest.raises(UserError, match="unknown"):
    step.main(["--models=vgg"])
  with pytest.raises(UserError, match="batch_sizes"):
    step.main(["--batch-sizes=twenty"])
  with pytest.raises(UserError, match="Unknown command line flag"):
    step.main(["--no-such-flag=1"])


def test_cli_accepts_dashed_flags_and_reports_user_errors_in_one_line():
  # A dashed flag parses (else absl would stop with status 1); the bad model is a UserError.
  p = subprocess.run([sys.executable, "-m", "medjax.bench", "--batch-sizes=2", "--models=vgg"],
                     capture_output=True, text=True, timeout=120)
  assert p.returncode == 2, p.stderr
  assert p.stderr.strip().splitlines() == [
      "error: --models: unknown ['vgg']; known: cnn, resnet, sgan"]


def test_benchmarks_import_no_optional_dependency():
  code = ("import sys, medjax.bench, medjax.benchmarks.rbm, medjax.benchmarks.pipeline, "
          "medjax.benchmarks.torch_reference, medjax.train.loop, experiments.luna_resnet, "
          "experiments.luna_cnn; bad = [m for m in ('tensorflow', 'SimpleITK', "
          "'tensorflow_datasets', 'torch', 'sklearn') if m in sys.modules]; assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_torch_reference_without_torch_says_how_to_install_it():
  code = ("import sys; sys.modules['torch'] = None; "
          "from medjax import cli; from medjax.benchmarks import torch_reference as t; "
          "cli.run(t.main, ['--models=sgan'])")
  p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert p.returncode == 2
  assert p.stderr.strip() == "error: PyTorch is not installed: pip install torch"


def test_rbm_benchmark_without_sklearn_times_medjax_alone(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "sklearn", None)
  out = tmp_path / "rbm.json"
  report = rbm.main(["--visible=16", "--hidden=8", "--batch=4", "--samples=16",
                                 "--repeats=1", f"--out={out}"])
  assert "comparison needs scikit-learn" in capsys.readouterr().out
  assert [r["name"].split()[0] for r in report["results"]] == ["medjax"] * 3
  assert json.loads(out.read_text())["versions"]["sklearn"] is None


def test_rbm_benchmark_compares_with_sklearn(tmp_path):
  pytest.importorskip("sklearn")
  report = rbm.main(["--visible=16", "--hidden=8", "--batch=4", "--samples=16",
                                 "--repeats=1", f"--out={tmp_path / 'rbm.json'}"])
  names = [r["name"].split()[0] for r in report["results"]]
  assert names == ["sklearn"] * 2 + ["medjax"] * 3
  assert all(r["speedup_vs_best_sklearn"] > 0 for r in report["results"])


@pytest.mark.parametrize("name,size", [("sgan", 50), ("sgan", 128), ("cnn", 50), ("resnet", 64)])
def test_torch_models_have_medjax_parameter_counts(name, size):
  pytest.importorskip("torch")
  modules = (torch_reference.sgan(image_size=size) if name == "sgan" else
             [torch_reference.cnn(image_size=size) if name == "cnn" else
              torch_reference.resnet50()])
  assert (torch_reference.count_params(*modules) ==
          torch_reference.medjax_param_count(name, size))


def test_torch_sgan_generator_makes_the_target_size():
  torch = pytest.importorskip("torch")
  gen, disc = torch_reference.sgan(image_size=50)
  fake = gen(torch.zeros(3, torch_reference.LATENT_DIM))
  assert tuple(fake.shape) == (3, 1, 50, 50)
  assert tuple(disc(fake).shape) == (3, 2)


def test_torch_reference_times_the_sgan_and_rbm_steps(tmp_path):
  pytest.importorskip("torch")
  results = torch_reference.main([
      "--models=sgan,rbm", "--batch-size=2", "--image-size=16", "--rbm-hidden=8", "--steps=1",
      "--windows=1", f"--out={tmp_path / 't.json'}"])
  assert [r["model"] for r in results] == ["sgan", "rbm"]
  assert all(r["ms_per_step"] > 0 for r in results)
  assert results[1]["params"] == 256 * 8 + 256 + 8
  data = json.loads((tmp_path / "t.json").read_text())
  assert data["results"] == results and data["flags"]["models"] == ["sgan", "rbm"]
  assert data["environment"]["cpu"] and data["environment"]["threads"] >= 1


@pytest.mark.slow
def test_input_pipeline_timing_reads_real_batches():
  r = pipeline.bench_input_pipeline(None, batch_size=20, seconds=0.5)
  assert r["input_pipeline"] == "tf.data" and r["batch_size"] == 20
  assert r["images_per_second"] > 0


# The formulations the CPU benchmarks led to (medjax/benchmarks/RESULTS.md) compute the plain
# layers' values and gradients.

def _values_and_grads(apply, params, x):
  loss = lambda p, x: jnp.sum(jnp.sin(apply(p, x)))
  return (jax.jit(apply)(params, x),) + jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)


def _assert_trees_close(a, b, tol=1e-4):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


@pytest.mark.parametrize("impl,shape,features,kernel,strides,padding", [
    ("shift_add", (2, 9, 11, 16), 1, (7, 7), (1, 1), "SAME"),      # the SGAN's 7x7 -> 1
    ("shift_add", (2, 8, 6, 20), 2, (3, 2), (1, 1), ((1, 0), (2, 1))),
    ("lax_matmul_grad", (2, 9, 11, 16), 8, (3, 3), (1, 1), "SAME"),  # a matmul per tap
    ("lax_matmul_grad", (2, 9, 11, 16), 8, (3, 3), (2, 2), "SAME"),
    ("lax_matmul_grad", (2, 13, 13, 1), 4, (7, 7), (2, 2), ((3, 3), (3, 3))),  # im2col stem
    ("lax_matmul_grad", (2, 8, 6, 20), 3, (3, 2), (2, 1), ((1, 0), (2, 1))),
])
def test_conv_formulations_match_lax_values_and_gradients(impl, shape, features, kernel,
                                                          strides, padding):
  x = jax.random.normal(jax.random.key(1), shape)
  conv = lambda impl: Conv(features, kernel, strides, padding, use_bias=True, impl=impl)
  params = conv("lax").init(jax.random.key(2), x)
  _assert_trees_close(_values_and_grads(conv(impl).apply, params, x),
                      _values_and_grads(conv("lax").apply, params, x))


def test_cpu_vendor_reads_cpuinfo_and_the_override(monkeypatch):
  monkeypatch.delenv("MEDJAX_CPU_VENDOR", raising=False)
  with open("/proc/cpuinfo") as f:
    listed = [l.split(":", 1)[1].strip() for l in f if l.startswith("vendor_id")]
  assert platform.cpu_vendor() == (listed[0] if listed else "")
  monkeypatch.setenv("MEDJAX_CPU_VENDOR", "AuthenticAMD")
  assert platform.cpu_vendor() == "AuthenticAMD"
  assert platform.xla_kernel_grad_min_output_pixels() == 64
  monkeypatch.setenv("MEDJAX_CPU_VENDOR", "GenuineIntel")
  assert platform.xla_kernel_grad_min_output_pixels() is None
  monkeypatch.setenv("MEDJAX_CPU_VENDOR", "AuthenticAMD")
  monkeypatch.setenv("MEDJAX_PLATFORM", "accelerator")
  assert platform.xla_kernel_grad_min_output_pixels() is None


def _takes_matmul_kernel_grad(side, strides, vendor, monkeypatch):
  """Whether Conv(impl='auto') on a side x side map, 40 -> 40 channels, 3x3, computes its
  kernel gradient by matmuls (a custom_vjp in its jaxpr) on a CPU of `vendor`."""
  monkeypatch.setenv("MEDJAX_CPU_VENDOR", vendor)
  monkeypatch.setenv("MEDJAX_PLATFORM", "cpu")
  x = jnp.ones((1, side, side, 40))
  conv = Conv(40, (3, 3), strides)
  params = conv.init(jax.random.key(0), x)
  return "custom_vjp" in str(jax.make_jaxpr(conv.apply)(params, x))


@pytest.mark.parametrize("side,strides,amd,intel", [
    (8, (1, 1), False, True),    # 64 output pixels: XLA's kernel gradient on AMD
    (13, (1, 1), False, True),   # ResNet-50's stage 1 at 50 px
    (7, (1, 1), True, True),     # 49 output pixels: matmuls on both
    (32, (2, 2), True, True),    # strided (16x16 outputs): matmuls on both
])
def test_conv_kernel_gradient_by_cpu_vendor(side, strides, amd, intel, monkeypatch):
  assert _takes_matmul_kernel_grad(side, strides, "AuthenticAMD", monkeypatch) == amd
  assert _takes_matmul_kernel_grad(side, strides, "GenuineIntel", monkeypatch) == intel


@pytest.mark.slow
def test_conv_transpose_4x4_gradients_match_flax_conv_transpose():
  x = jax.random.normal(jax.random.key(1), (2, 5, 7, 3))
  ref = nn.ConvTranspose(6, (4, 4), (2, 2), padding="SAME")
  params = ref.init(jax.random.key(0), x)
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)
  _assert_trees_close(_values_and_grads(sgan.ConvTranspose4x4(6).apply, params, x),
                      _values_and_grads(ref.apply, params, x))


@pytest.mark.slow
def test_sgan_cpu_layers_compute_the_plain_layers(monkeypatch):
  # 64 features at 32x32 reach every CPU path: shift_add (7x7, 64 -> 1), the custom
  # transposed-convolution gradients, lax_matmul_grad (D's first conv) and strided im2col.
  # D gets the same images in both runs: G's outputs differ by rounding, which can flip a
  # LeakyReLU whose input is within rounding of 0.
  gen, disc = Generator(image_shape=(32, 32, 1), features=64), Discriminator(features=64)
  z = jax.random.normal(jax.random.key(1), (2, 100))
  images = jnp.tanh(jax.random.normal(jax.random.key(2), (2, 32, 32, 1)))
  g_params = gen.init(jax.random.key(3), z)
  d_params = disc.init(jax.random.key(4), images)

  def run():
    return (_values_and_grads(gen.apply, g_params, z),
            _values_and_grads(disc.apply, d_params, images))

  fast = run()
  monkeypatch.setattr(platform, "cpu_layers", lambda: False)
  _assert_trees_close(fast, run())
