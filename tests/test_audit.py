import numpy as np
from PIL import Image

from medjax.data import audit, luna16, synthetic_ct
from medjax.data.base import Split


def _field(rng, size):
  """Smooth random image (0..255), like CT texture."""
  f = np.fft.fftfreq(size)
  spectrum = np.fft.fft2(rng.normal(size=(size, size))) * np.exp(-(f[:, None] ** 2 + f ** 2) * 400)
  field = np.real(np.fft.ifft2(spectrum))
  return (field - field.min()) / np.ptp(field) * 255


def _split(images, labels):
  images = np.clip(np.round(images), 0, 255).astype(np.uint8)[..., None]
  return Split(images, np.asarray(labels, np.int32), np.arange(len(images)).astype(str))


def test_finds_transformed_and_shifted_copies_and_nothing_else():
  rng = np.random.default_rng(0)
  big = [_field(rng, 80) for _ in range(60)]
  train = _split([b[10:42, 10:42] for b in big], [i % 2 for i in range(60)])
  tests, expect = [], []
  for i in range(8):  # copy i of train image i under transform i, with JPEG-like noise
    tests.append(audit.dihedral(big[i][10:42, 10:42], i) + rng.normal(0, 1.5, (32, 32)))
    expect.append((i, i))
  tests.append(big[8][13:45, 5:37])  # another candidate 3 px down, 5 px left
  tests += [_field(rng, 32) for _ in range(10)]  # unrelated
  test = _split(tests, [i % 2 for i in range(8)] + [0] + [1] * 10)
  m = audit.best_matches(train, test, max_shift=6)
  dup = m.duplicates()
  assert dup[:9].all() and not dup[9:].any(), m.rms
  for n, (j, k) in enumerate(expect):
    assert m.train_index[n] == j and np.array_equal(m.shift[n], [0, 0])
    # The transform found maps the test image back onto the train image.
    np.testing.assert_allclose(audit.dihedral(test.images[n, ..., 0], m.transform[n]),
                               train.images[j, ..., 0], atol=8)
  assert m.train_index[8] == 8 and m.shift[8].tolist() == [3, -5]
  text = audit.report(train, test, m)
  assert "9 of 19 images" in text and "copies (no shift) 4, shifted 1" in text


def test_leaky_split_of_synthetic_ct_has_duplicates_and_split_by_scan_has_none(tmp_path):
  root = synthetic_ct.luna16_root(n_scans=4)
  opts = dict(val_fraction=0.0, neg_ratio=1, test_neg_ratio=1)
  by_scan = luna16.prepare(root, luna16.Options(**opts), cache=False, workers=1)
  leaky = luna16.prepare(root, luna16.Options(split="random", **opts), cache=False, workers=1)
  clean = audit.best_matches(by_scan["train"], by_scan["test"]).duplicates()
  dup = audit.best_matches(leaky["train"], leaky["test"]).duplicates()
  assert clean.sum() == 0
  # Several candidates of one nodule: the random split puts some in train and some in test.
  assert dup[leaky["test"].labels == 1].sum() >= 3


def test_command_line_reports_per_class(tmp_path, capsys):
  rng = np.random.default_rng(1)
  images = [_field(rng, 50) for _ in range(6)]
  for split, idx in (("train", range(4)), ("val", (0, 4, 5))):
    (tmp_path / split).mkdir()
    lines = []
    for i in idx:
      img = np.clip(images[i], 0, 255).astype(np.uint8)
      Image.fromarray(np.rot90(img) if split == "val" else img).save(
          tmp_path / split / f"image_{i}.png")
      lines.append(f"{split}/image_{i}.png {int(i in (0, 5))}")
    (tmp_path / f"{split}datalabels.txt").write_text("\n".join(lines) + "\n")
  assert audit.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "val: 1 of 3 images" in out
  assert "positive:     1 of     2" in out and "negative:     0 of     1" in out
  assert "rot270 1" in out or "rot90 1" in out
