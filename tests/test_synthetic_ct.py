import os

import numpy as np
import pytest

from medjax.data import luna16, synthetic_ct

sitk = pytest.importorskip("SimpleITK")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return synthetic_ct.luna16_root(n_scans=4)  # session cache (conftest)


def test_scans_are_deterministic():
  a, b = synthetic_ct.render_scan(0, 1), synthetic_ct.render_scan(0, 1)
  np.testing.assert_array_equal(a[0], b[0])
  assert [(w.tolist(), c) for w, c in a[5]] == [(w.tolist(), c) for w, c in b[5]]
  assert not np.array_equal(synthetic_ct.render_scan(1, 1)[0][:5], a[0][:5])


def test_layout_is_real_metaimage_with_flipped_directions(root):
  uids = open(os.path.join(root, "seriesuids.csv")).read().split()
  scans = luna16.find_scans(root)
  assert sorted(uids) == sorted(scans) and len(uids) == 4
  assert sorted(s for s, _ in scans.values()) == [0, 1, 2, 3]
  directions = []
  for uid in uids:
    _, path = scans[uid]
    header = open(path).read()
    assert "ElementType = MET_SHORT" in header
    image = sitk.ReadImage(path)
    assert image.GetPixelID() == sitk.sitkInt16
    assert np.all(np.abs(image.GetOrigin()) > 1) and image.GetSpacing()[2] > image.GetSpacing()[0]
    directions.append(np.diag(np.reshape(image.GetDirection(), (3, 3))))
  assert any((d < 0).any() for d in directions) and any((d > 0).all() for d in directions)


def test_candidate_labels_agree_with_annotations(root):
  ann = luna16.read_annotations(os.path.join(root, "annotations.csv"))
  cand = luna16.read_candidates(os.path.join(root, "candidates.csv"))
  assert 0.1 < cand.value.mean() < 0.2  # about 1 positive for 7 negatives
  for uid in np.unique(cand.seriesuid):
    nodules = ann.world[ann.seriesuid == uid]
    radius = ann.value[ann.seriesuid == uid] / 2
    pts = cand.world[cand.seriesuid == uid]
    # Distance from each candidate to the surface of the nearest nodule (negative inside).
    gap = (np.linalg.norm(pts[:, None] - nodules[None], axis=-1) - radius[None]).min(axis=1)
    labels = cand.value[cand.seriesuid == uid]
    assert np.all(gap[labels == 0] >= 2.0 - 1e-6)
    # Positives sit near the centre (jittered like a CAD system), well inside the nodule box.
    assert np.all(gap[labels == 1] < 1.0 * radius.max())


def test_generation_is_cached(root):
  mtime = os.path.getmtime(os.path.join(root, "candidates.csv"))
  again = synthetic_ct.luna16_root(n_scans=4, directory=os.path.dirname(root))
  assert again == root and os.path.getmtime(os.path.join(root, "candidates.csv")) == mtime
  assert not [p for p in os.listdir(os.path.dirname(root)) if p.startswith(".")]  # no temp left
