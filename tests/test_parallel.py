"""Data parallelism: N devices (forced host devices) and N processes train the same model as one."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # end-to-end training runs


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_dp_worker.py")


def _env(host_devices: int):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={host_devices}"
  return env


def _load(path):
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


def _assert_same_training(a, b):
  assert a.keys() == b.keys()
  np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5)
  for k in a:
    if k not in ("losses", "devices"):
      np.testing.assert_allclose(a[k], b[k], rtol=2e-4, atol=2e-5, err_msg=k)


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
  out = tmp_path_factory.mktemp("dp") / "one.npz"
  subprocess.run([sys.executable, WORKER, str(out), "--devices=1"], env=_env(4), check=True,
                 timeout=300)
  return _load(out)


def test_sharded_over_four_devices_matches_one_device(single_device, tmp_path):
  out = tmp_path / "four.npz"
  subprocess.run([sys.executable, WORKER, str(out)], env=_env(4), check=True, timeout=300)
  four = _load(out)
  assert int(four["devices"]) == 4 and int(single_device["devices"]) == 1
  _assert_same_training(four, single_device)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_on_localhost_match_one_device(single_device, tmp_path):
  out, port = tmp_path / "two_procs.npz", _free_port()
  procs = [subprocess.Popen([sys.executable, WORKER, str(out), f"--process-id={i}",
                             "--num-processes=2", f"--port={port}"], env=_env(2),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  try:
    outputs = [p.communicate(timeout=300) for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  two = _load(out)
  assert int(two["devices"]) == 4  # 2 processes x 2 devices
  _assert_same_training(two, single_device)


def test_experiment_runs_data_parallel_on_four_devices(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.luna_cnn", "--config.smoke=True",
       "--config.device_resident=True", "--config.log_every=4", f"--workdir={tmp_path / 'run'}"],
      env=_env(4), cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "run" / "results.json").exists()
  assert "accuracy" in proc.stdout
