import os
import socket

import pytest

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
LUNA_PATCHES = os.path.abspath(os.path.join(SHARED, "data", "luna16_patches"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
  """Synthetic-data and XLA compilation caches in a temp dir, so tests never depend on (or
  touch) ~/.cache. The compilation cache is the one every entry point uses
  (`runner.enable_compilation_cache`): tests that build the same models and steps load them
  instead of compiling them again."""
  from medjax import platform
  names = ("MEDJAX_CACHE_DIR", "MEDJAX_JAX_CACHE")
  old = {name: os.environ.get(name) for name in names}
  for name in names:
    os.environ[name] = str(tmp_path_factory.mktemp(name.lower()))
  platform.enable_compilation_cache()
  yield
  for name, value in old.items():
    if value is None:
      os.environ.pop(name, None)
    else:
      os.environ[name] = value


requires_luna_patches = pytest.mark.skipif(
    not os.path.isfile(os.path.join(LUNA_PATCHES, "traindatalabels.txt")),
    reason="../shared/data/luna16_patches is not present (fresh clone)")


@pytest.fixture
def offline(monkeypatch):
  """Any network access during a build fails the test."""
  def refuse(*args, **kwargs):
    raise AssertionError("network access attempted")
  monkeypatch.setattr(socket, "create_connection", refuse)
  monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
  """`finished_run(model)`: the workdir of a 1-epoch luna_<model> smoke run, trained on first
  use, once per session (the post-run tools are tested on a run of every model)."""
  import importlib
  from medjax import runner
  runs = {}

  def get(model: str) -> str:
    if model not in runs:
      workdir = str(tmp_path_factory.mktemp(f"luna_{model}_smoke"))
      config = importlib.import_module(f"experiments.luna_{model}").get_config()
      config.smoke = True
      config.num_epochs = 1
      runner.run(config, workdir)
      assert os.path.exists(os.path.join(workdir, "results.json"))
      runs[model] = workdir
    return runs[model]

  return get


@pytest.fixture(scope="session")
def finished_ensemble(finished_run, tmp_path_factory):
  """`finished_ensemble(model)`: the directory of a seed ensemble of two members, the
  `finished_run(model)` and a copy of it relabelled seed 1 (loading is what differs by model,
  not averaging)."""
  import json
  import shutil
  from medjax.analysis.seed_ensemble import write_seed_ensemble
  ensembles = {}

  def get(model: str) -> str:
    if model not in ensembles:
      root = tmp_path_factory.mktemp(f"luna_{model}_seeds")
      seed0, seed1 = str(root / "seed0"), str(root / "seed1")
      shutil.copytree(finished_run(model), seed0, ignore=shutil.ignore_patterns(".lock"))
      shutil.copytree(seed0, seed1)
      for name in ("config.json", "results.json"):
        with open(os.path.join(seed1, name)) as f:
          content = json.load(f)
        content["seed"] = 1
        with open(os.path.join(seed1, name), "w") as f:
          json.dump(content, f)
      write_seed_ensemble([seed0, seed1], str(root / "ensemble"))
      ensembles[model] = str(root / "ensemble")
    return ensembles[model]

  return get
