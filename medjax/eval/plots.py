"""Figures written next to results (Agg backend: no display needed).

Every figure's title names what it shows and carries `data_marks` (synthetic data, smoke run),
so a figure never passes for a real result when it is not one.
"""

from __future__ import annotations

import textwrap
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from medjax.rundir import writing  # noqa: E402

SYNTHETIC_MARK = "synthetic data"
SMOKE_MARK = "smoke run"
MARK_COLOR = "#b00020"


def data_marks(synthetic: bool = False, smoke: bool = False) -> list[str]:
  """The warnings a figure's title must carry."""
  return [m for m, on in ((SYNTHETIC_MARK, synthetic), (SMOKE_MARK, smoke)) if on]


def marked_title(title: str, marks: Sequence[str] = ()) -> str:
  """`title` followed by the marks in capitals, e.g. "luna_cnn  [SYNTHETIC DATA]"."""
  return f"{title}  [{', '.join(m.upper() for m in marks)}]" if marks else title


def set_title(fig, title: str, marks: Sequence[str] = (), fontsize: float = 12):
  """The figure's suptitle, in red when it carries marks, wrapped to the figure's width."""
  width = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))  # characters per line
  lines = textwrap.wrap(marked_title(title, marks), width)
  if marks and len(lines) > 1:  # keep the marks together on a line of their own
    lines = textwrap.wrap(title, width) + [marked_title("", marks).strip()]
  return fig.suptitle("\n".join(lines), color=MARK_COLOR if marks else "black",
                      fontsize=fontsize)


def figure_to_array(fig) -> np.ndarray:
  """The figure rendered as an [H, W, 3] uint8 array."""
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig, path: str) -> None:
  """Writes `fig` to `path` and closes it; the saved area grows to take in any title, label or
  legend that reaches beyond the figure's edges."""
  try:
    with writing(path):
      fig.savefig(path, bbox_inches="tight", pad_inches=0.1)
  finally:
    plt.close(fig)


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


def confusion_matrix_figure(cm, title: str = "", marks: Sequence[str] = (), dpi: int = 120):
  """One confusion matrix; its title wrapped to the figure's width, the marks on their own line
  (a figure this narrow would cut a long title)."""
  fig, ax = plt.subplots(figsize=(3.6, 3.6), dpi=dpi)
  plot_confusion_matrix(cm, ax)
  if title or marks:
    set_title(fig, title, marks, fontsize=10)
  fig.tight_layout()
  return fig


def save_confusion_matrix(cm, path: str, title: str = "", marks: Sequence[str] = ()) -> None:
  save_figure(confusion_matrix_figure(cm, title, marks), path)


# --- training curves --------------------------------------------------------------------------

PANELS = (("loss", "loss"), ("accuracy", "accuracy"), ("AUC", "auc"))
_SPLIT_STYLES = {"train": "-", "val": "--"}
_EXTRA_STYLES = (":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)))


def panel_keys(histories: Sequence[Sequence[Mapping[str, Any]]], suffix: str) -> list[str]:
  """The metrics.jsonl keys of one panel (`train_*<suffix>`, `val_*<suffix>`) that any run
  logged: train_<suffix> and val_<suffix> first, then the others (an SGAN's g_loss...)."""
  found = {k for h in histories for rec in h for k in rec if k.startswith(("train_", "val_"))
           and (k.split("_", 1)[1] == suffix or k.endswith("_" + suffix))}
  main = [k for k in (f"train_{suffix}", f"val_{suffix}") if k in found]
  return main + sorted(found - set(main))


def metric_label(key: str, sgan: bool = False) -> str:
  """"train_loss" -> "train", "train_g_loss" -> "g loss (train)"."""
  split, name = key.split("_", 1)
  if name in ("loss", "accuracy", "auc"):
    return f"{split} (discriminator total)" if sgan and name == "loss" else split
  return f"{name.replace('_', ' ')} ({split})"


def _series(history: Sequence[Mapping[str, Any]], key: str):
  epochs = np.array([r.get("epoch", i + 1) for i, r in enumerate(history)], np.float64)
  values = np.array([np.nan if r.get(key) is None else float(r[key]) for r in history])
  return epochs, values


def save_training_curves(path: str, histories: Mapping[str, Sequence[Mapping[str, Any]]], *,
                         title: str, marks: Sequence[str] = (),
                         best_epochs: Mapping[str, int | None] | None = None,
                         majority: float | None = None) -> None:
  """Loss, accuracy and AUC against epoch, from metrics.jsonl records (label -> records).

  One run: a colour per metric (train solid, validation dashed). Several: a colour per run and a
  line style per metric. `best_epochs` (label -> the checkpoint's epoch) draws a vertical line;
  `majority` (the majority-class accuracy of the validation split) a dashed reference.
  """
  labels = list(histories)
  single = len(labels) == 1
  best_epochs = best_epochs or {}
  sgan = single and any(k.endswith("g_loss") for h in histories.values() for r in h for k in r)
  span = [e for h in histories.values() for e in _series(h, "epoch")[0]] or [1]
  pad = max(0.5, 0.02 * (max(span) - min(span)))
  run_colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
  fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), dpi=110, layout="constrained")
  style_handles = {}
  for ax, (name, suffix) in zip(axes, PANELS):
    keys = panel_keys(list(histories.values()), suffix)
    if not single:  # an overlay shows train/val and the extra metrics every run logged
      keys = [k for k in keys if k.split("_", 1)[1] == suffix
              or all(any(k in r for r in h) for h in histories.values())]
    # train solid and C0, val dashed and C1, extra metrics (an SGAN's g_loss...) from C2 / dotted
    extras = [k for k in keys if k.split("_", 1)[1] != suffix]
    styles = {k: _EXTRA_STYLES[extras.index(k) % len(_EXTRA_STYLES)] if k in extras
              else _SPLIT_STYLES[k.split("_", 1)[0]] for k in keys}
    key_colors = {k: f"C{(2 + extras.index(k)) % 10}" if k in extras
                  else "C0" if k.startswith("train_") else "C1" for k in keys}
    any_points = False
    for label in labels:
      for key in keys:
        epochs, values = _series(histories[label], key)
        if np.isnan(values).all():
          continue
        any_points = True
        name_of_line = metric_label(key, sgan)
        ax.plot(epochs, values, linestyle=styles[key], lw=1.4,
                color=key_colors[key] if single else run_colors[label],
                marker="o" if len(epochs) <= 30 else None, markersize=3,
                label=name_of_line if single else f"{label}: {name_of_line}")
        style_handles.setdefault(name_of_line,
                                 Line2D([], [], color="0.3", linestyle=styles[key]))
      best = best_epochs.get(label)
      if best is not None:
        ax.axvline(best, color="0.45" if single else run_colors[label], linestyle=":", lw=1.2,
                   zorder=0)
        if single:
          ax.text(best, 0.98, f" best: epoch {best} ", transform=ax.get_xaxis_transform(),
                  rotation=90, va="top", ha="right", fontsize=8, color="0.3")
    if not any_points:
      ax.text(0.5, 0.5, f"no {name} logged", transform=ax.transAxes, ha="center",
              va="center", color="0.5")
    if suffix in ("accuracy", "auc"):
      chance = majority if suffix == "accuracy" else 0.5
      if chance is not None:
        ax.axhline(chance, color="0.6", linestyle=(0, (4, 3)), lw=1, zorder=0,
                   label=("val majority class" if suffix == "accuracy" else "chance")
                   + f" {chance:.2f}" if single else None)
      lows = [v for h in histories.values() for k in keys for v in _series(h, k)[1]
              if np.isfinite(v)] + ([chance] if chance is not None else [])
      ax.set_ylim(min(0.4, np.floor(10 * min(lows, default=0.4)) / 10), 1.01)
    ax.set_title(name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    ax.set_xlim(min(span) - pad, max(span) + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)
    if single and any_points:
      ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3,
                frameon=False)
  if not single:
    blank = Line2D([], [], linestyle="")
    handles = [Line2D([], [], color=run_colors[l], lw=2) for l in labels]
    handles += [blank, *style_handles.values()]
    names = labels + [""] + list(style_handles)
    if any(e is not None for e in best_epochs.values()):
      handles.append(Line2D([], [], color="0.45", linestyle=":"))
      names.append("best epoch")
    fig.legend(handles, names, loc="outside right upper", fontsize=8, frameon=False)
  set_title(fig, title, marks)
  save_figure(fig, path)


# --- ROC and precision-recall -----------------------------------------------------------------

def save_roc(path: str, curves: Sequence[Mapping[str, Any]], *, title: str,
             marks: Sequence[str] = ()) -> None:
  """ROC curves. Each curve: label, fpr, tpr, auc, auc_ci95 ((lo, hi) or None) and point (the
  (fpr, tpr) at threshold 0.5, or None)."""
  fig, ax = plt.subplots(figsize=(6, 6.2), dpi=110, layout="constrained")
  ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", lw=1, label="chance")
  for i, c in enumerate(curves):
    color = f"C{i % 10}"
    ci = c.get("auc_ci95")
    auc = "AUC n/a" if c.get("auc") is None else f"AUC {c['auc']:.3f}" + (
        f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
    ax.plot(c["fpr"], c["tpr"], color=color, lw=1.6,
            label=f"{c['label']}: {auc}" if c.get("label") else auc)
    if c.get("point") is not None:
      ax.plot(*c["point"], "o", color=color, markeredgecolor="black", markersize=7, zorder=5)
  if any(c.get("point") is not None for c in curves):
    ax.plot([], [], "o", color="white", markeredgecolor="black", label="threshold 0.5")
  if len(curves) == 1 and curves[0].get("point") is not None:
    fpr, tpr = curves[0]["point"]
    ax.annotate(f"sensitivity {tpr:.2f}\nspecificity {1 - fpr:.2f}", (fpr, tpr),
                xytext=(12, -24), textcoords="offset points", fontsize=8)
  ax.set_xlim(-0.01, 1.01)
  ax.set_ylim(-0.01, 1.01)
  ax.set_aspect("equal")
  ax.set_xlabel("false positive rate (1 − specificity)")
  ax.set_ylabel("true positive rate (sensitivity)")
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right", fontsize=8)
  set_title(fig, title, marks, fontsize=10)
  save_figure(fig, path)


def save_precision_recall(path: str, curves: Sequence[Mapping[str, Any]], *, title: str,
                          marks: Sequence[str] = ()) -> None:
  """Precision against recall. Each curve: label, recall, precision, average_precision,
  prevalence and point ((recall, precision) at threshold 0.5, or None)."""
  fig, ax = plt.subplots(figsize=(6, 6.2), dpi=110, layout="constrained")
  prevalences = {round(c["prevalence"], 6) for c in curves}
  for i, c in enumerate(curves):
    color = f"C{i % 10}"
    ap = f"AP {c['average_precision']:.3f}"
    ax.plot(c["recall"], c["precision"], color=color, lw=1.6, drawstyle="steps-pre",
            label=f"{c['label']}: {ap}" if c.get("label") else ap)
    if c.get("point") is not None:
      ax.plot(*c["point"], "o", color=color, markeredgecolor="black", markersize=7, zorder=5)
    if len(prevalences) > 1:
      ax.axhline(c["prevalence"], color=color, linestyle="--", lw=0.8)
  if len(prevalences) == 1:
    p = prevalences.pop()
    ax.axhline(p, color="0.6", linestyle="--", lw=1, label=f"chance (prevalence {p:.2f})")
  if any(c.get("point") is not None for c in curves):
    ax.plot([], [], "o", color="white", markeredgecolor="black", label="threshold 0.5")
  ax.set_xlim(-0.01, 1.01)
  ax.set_ylim(-0.01, 1.01)
  ax.set_aspect("equal")
  ax.set_xlabel("recall (sensitivity)")
  ax.set_ylabel("precision (positive predictive value)")
  ax.grid(alpha=0.3)
  fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8, ncol=2,
             frameon=False)  # below the axes: PR curves can fill any corner
  set_title(fig, title, marks, fontsize=10)
  save_figure(fig, path)


def save_reliability(path: str, curves: Sequence[Mapping[str, Any]], *, title: str,
                     marks: Sequence[str] = ()) -> None:
  """Reliability diagram: per bin of P(positive), the observed positive rate against the mean
  predicted probability (the diagonal is perfect calibration), with the share of examples per
  bin below. Each curve: label, bins (calibration.reliability_bins), ece."""
  fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 7), dpi=110, sharex=True,
                                 height_ratios=(3, 1), layout="constrained")
  ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", lw=1, label="perfect calibration")
  for i, c in enumerate(curves):
    color = f"C{i % 10}"
    bins = c["bins"]
    used = bins["count"] > 0
    label = f"ECE {c['ece']:.3f}"
    ax.plot(bins["confidence"][used], bins["frequency"][used], "o-", color=color, lw=1.5,
            label=f"{c['label']}: {label}" if c.get("label") else label)
    centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
    width = (bins["edges"][1] - bins["edges"][0]) / max(1, len(curves))
    hist.bar(centres - 0.5 * (bins["edges"][1] - bins["edges"][0]) + (i + 0.5) * width,
             bins["count"] / max(1, bins["count"].sum()), width=width, color=color, alpha=0.7)
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_ylabel("observed share of positives")
  ax.grid(alpha=0.3)
  ax.legend(loc="upper left", fontsize=8)
  hist.set_xlabel("predicted P(positive), binned")
  hist.set_ylabel("share of examples")
  hist.grid(alpha=0.3)
  set_title(fig, title, marks, fontsize=10)
  save_figure(fig, path)


# --- GAN samples ------------------------------------------------------------------------------

def unit_range(images, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
  """[N, ...] images, uint8 or float in `value_range`, as float32 in [0, 1]."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  low, high = value_range
  return np.clip((images.astype(np.float32) - low) / (high - low), 0, 1)


def tile(images, value_range: tuple[float, float] = (0.0, 1.0), columns: int | None = None,
         pad: int = 1) -> np.ndarray:
  """[N, H, W(, C)] images, uint8 or float in `value_range`, as one float [0, 1] mosaic
  [rows * H, columns * W, C] with white padding (square by default)."""
  images = unit_range(images, value_range)
  if images.ndim == 3:
    images = images[..., None]
  if images.shape[-1] not in (1, 3):
    images = images[..., :1]
  n, h, w, c = images.shape
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = -(-n // columns)
  grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
  for i in range(n):
    r, col = divmod(i, columns)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + col * (w + pad):pad + col * (w + pad) + w] = images[i]
  return grid


def save_sample_grid(path: str, generated, real, title: str, *,
                     marks: Sequence[str] = ()) -> None:
  """Real images (left panel) beside generated ones (right), each [N, H, W(, C)]: `generated`
  in the generator's tanh range [-1, 1], `real` uint8 or float in [0, 1]."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 5.4), dpi=110, layout="constrained")
  for ax, images, value_range, name in ((axes[0], real, (0, 1), "real"),
                                        (axes[1], generated, (-1, 1), "generated")):
    grid = tile(images, value_range)
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(f"{name} images ({len(images)})")
    ax.set_xticks([])
    ax.set_yticks([])
  set_title(fig, title, marks)
  save_figure(fig, path)
