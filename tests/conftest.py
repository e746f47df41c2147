import os
import socket

import pytest

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
LUNA_PATCHES = os.path.abspath(os.path.join(SHARED, "data", "luna16_patches"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
  """Synthetic-data cache in a temp dir, so tests never depend on (or touch) ~/.cache."""
  old = os.environ.get("MEDJAX_CACHE_DIR")
  os.environ["MEDJAX_CACHE_DIR"] = str(tmp_path_factory.mktemp("medjax_cache"))
  yield
  if old is None:
    os.environ.pop("MEDJAX_CACHE_DIR", None)
  else:
    os.environ["MEDJAX_CACHE_DIR"] = old


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
def finished_cnn_run(tmp_path_factory) -> str:
  """A 1-epoch luna_cnn smoke run's workdir, trained once per session (restore, saliency)."""
  import os as _os
  from experiments import _runner, luna_cnn
  workdir = str(tmp_path_factory.mktemp("luna_cnn_smoke"))
  config = luna_cnn.get_config()
  config.smoke = True
  config.num_epochs = 1
  _runner.run(config, workdir)
  assert _os.path.exists(_os.path.join(workdir, "results.json"))
  return workdir
