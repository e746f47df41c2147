"""Figures written next to results (Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion_matrix(cm, ax, title: str = "") -> None:
  cm = np.asarray(cm)
  ax.imshow(cm, cmap="Blues", vmin=0)
  names = ("negative", "positive")
  ax.set_xticks([0, 1], names)
  ax.set_yticks([0, 1], names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  tags = (("TN", "FP"), ("FN", "TP"))
  for i in range(2):
    for j in range(2):
      dark = cm[i, j] > cm.max() / 2
      ax.text(j, i, f"{tags[i][j]}\n{cm[i, j]}", ha="center", va="center",
              color="white" if dark else "black")
  if title:
    ax.set_title(title)


def save_confusion_matrix(cm, path: str, title: str = "") -> None:
  fig, ax = plt.subplots(figsize=(3.6, 3.4), dpi=120)
  plot_confusion_matrix(cm, ax, title)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
