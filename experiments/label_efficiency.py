"""What the SGAN is for: test accuracy against the number of labelled training images (LUNA16).

    python -m experiments.label_efficiency --luna_dir=../shared/data/luna16_patches \\
        --labels=100,500 --seeds=0,1 --workdir=runs/luna16_label_efficiency
    python -m experiments.label_efficiency --smoke          # the whole study in minutes (CPU)

For each labelled budget n and seed k, three models learn from the same n labelled training
images (`data.num_labelled=n`: stratified by class; seed k labels the same images for every
model, and the seeds differ in which images they label):

  sgan     the SGAN: its classifier sees the n labelled images, its real/fake game every
           training image, labelled or not
  sgan_d   the same discriminator alone (`sgan.gan=False`): the n labelled images only, no
           generator (the SGAN's ablation: what the unlabelled images and the generator add)
  cnn      the paper's CNN on the n labelled images only

Every model takes the same number of training steps of `batch_size` labelled images: the SGAN's
(`--sgan_epochs` passes over the whole training split); the CNN's epochs are set to match. All
share one split (`--data_seed`): the checkpoint is chosen on the same validation hold-out and
tested on the same test split. Runs go into <workdir>/n<n>/<model>/seed<k> (finished runs are
not trained again); <workdir>/label_efficiency.csv and .md hold accuracy and AUC (mean and std
over seeds) per model and budget beside the majority baseline, label_efficiency.png plots them.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import time

import numpy as np
from absl import flags

from experiments.paper_table2 import majority
from medjax import cli, platform, runner
from medjax import config as config_lib
from medjax.data import load_dataset
from medjax.errors import ConfigError, UserError
from medjax.eval.plots import data_marks, plt, save_figure, set_title
from medjax.rundir import read_results, seed_workdir, write_csv, write_text
from medjax.train.driver import duration

log = logging.getLogger("medjax")

MODELS = {  # name -> (experiment, config overrides, legend label)
    "sgan": ("luna_sgan", {}, "SGAN (labelled + unlabelled)"),
    "sgan_d": ("luna_sgan", {"sgan.gan": False}, "SGAN discriminator alone (labelled)"),
    "cnn": ("luna_cnn", {}, "CNN (labelled)"),
}


def model_config(model: str, n: int, seed: int, *, luna_dir: str | None, data_seed: int,
                 smoke: bool, epochs: int):
  experiment, overrides, _ = MODELS[model]
  config = importlib.import_module(f"experiments.{experiment}").get_config()
  config.smoke = smoke
  config.seed = seed
  config.data.seed = data_seed
  config.data.dir = luna_dir
  config.data.num_labelled = n
  config.num_epochs = epochs
  for key, value in overrides.items():
    block, field = key.split(".")
    config[block][field] = value
  return config


def training_images(luna_dir: str | None, data_seed: int, smoke: bool) -> int:
  """Size of the training split (after the validation hold-out) that the runs will see."""
  config = config_lib.resolve(model_config("cnn", 2, 0, luna_dir=luna_dir, data_seed=data_seed,
                                           smoke=smoke, epochs=1))
  return len(load_dataset(config.dataset, config.data, config.data.seed).train)


def epochs_for(model: str, n_labelled: int, n_train: int, batch_size: int,
               sgan_epochs: int) -> int:
  """Epochs giving `model` the SGAN's number of steps: an SGAN epoch is a pass over all
  `n_train` training images; a CNN epoch one over the `n_labelled` labelled ones."""
  if model in ("sgan", "sgan_d"):
    return sgan_epochs
  steps = sgan_epochs * (n_train // batch_size)
  per_epoch = n_labelled // batch_size
  if per_epoch < 1:
    raise ConfigError(f"{n_labelled} labelled images make no batch of {batch_size}: use "
                      f"--labels of at least {batch_size}")
  return math.ceil(steps / per_epoch)


def summarize(results: dict[tuple[int, str], list[dict]]) -> list[dict]:
  """One row per (budget, model): mean and std over seeds."""
  rows = []
  for (n, model), runs in sorted(results.items()):
    tests = [r["test"] for r in runs]

    def stat(key):
      values = [t[key] for t in tests if t.get(key) is not None]
      return (float(np.mean(values)), float(np.std(values))) if values else (None, None)

    acc, acc_sd = stat("accuracy")
    auc, auc_sd = stat("auc")
    first = runs[0]
    collapsed = [r["generator"]["collapsed"] for r in runs if r.get("generator")]
    rows.append({
        "labels": n, "model": model, "seeds": len(runs),
        "seed_list": " ".join(str(r["seed"]) for r in runs),
        "data": "synthetic" if first["synthetic"] else "real",
        "smoke": any(r.get("smoke", False) for r in runs),
        "n_labelled": first["n_train"], "n_unlabelled": first.get("n_unlabelled", 0),
        "epochs": first["epochs"], "n_test": first["n_test"],
        "accuracy": acc, "accuracy_std": acc_sd, "auc": auc, "auc_std": auc_sd,
        "sensitivity": stat("sensitivity")[0], "specificity": stat("specificity")[0],
        "majority": majority(first),
        "generator_collapsed": (any(collapsed) if collapsed else None),
        "train_minutes": float(np.mean([r["train_seconds"] for r in runs])) / 60})
  return rows


def _fmt(mean, sd, scale=1.0, digits=1):
  if mean is None:
    return "—"
  text = f"{scale * mean:.{digits}f}"
  return text + (f" ± {scale * sd:.{digits}f}" if sd is not None else "")


def write_tables(rows: list[dict], workdir: str) -> None:
  write_csv(os.path.join(workdir, "label_efficiency.csv"), list(rows[0]),
            ([r[k] for k in rows[0]] for r in rows))
  marks = title_marks(rows)
  lines = ["# Test accuracy against labelled training images (LUNA16 patches)"]
  lines += [f"\n**{m.upper()}**" for m in marks]
  lines += ["", "| labels | model | seeds | epochs | accuracy % | AUC | sensitivity | "
            "specificity | majority % | unlabelled images | train min / seed |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    multi = r["seeds"] > 1
    lines.append(
        f"| {r['labels']} | {r['model']} | {r['seed_list']} | {r['epochs']} | "
        f"{_fmt(r['accuracy'], r['accuracy_std'] if multi else None, 100)} | "
        f"{_fmt(r['auc'], r['auc_std'] if multi else None, 1, 3)} | "
        f"{_fmt(r['sensitivity'], None, 1, 3)} | {_fmt(r['specificity'], None, 1, 3)} | "
        f"{_fmt(r['majority'], None, 100)} | {r['n_unlabelled']} | {r['train_minutes']:.1f} |")
  lines += ["", "Every model of a row takes the same number of steps of labelled batches "
            "(the SGAN's epochs over the whole training split; the CNN's epochs match them). "
            "Accuracy of the checkpoint chosen on the validation hold-out, on the test split; "
            "mean ± std over seeds, each seed labelling its own stratified subset."]
  write_text(os.path.join(workdir, "label_efficiency.md"), "\n".join(lines) + "\n")


def title_marks(rows: list[dict]) -> list[str]:
  return data_marks(any(r["data"] == "synthetic" for r in rows), any(r["smoke"] for r in rows))


def plot(rows: list[dict], path: str) -> None:
  """Accuracy and AUC against labelled images, one line per model (error bars: std over
  seeds), the majority baseline on the accuracy panel."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110, layout="constrained")
  budgets = sorted({r["labels"] for r in rows})
  for model, (_, _, label) in MODELS.items():
    mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["labels"])
    if not mine:
      continue
    for ax, key in zip(axes, ("accuracy", "auc")):
      ax.errorbar([r["labels"] for r in mine], [r[key] for r in mine],
                  yerr=[r[f"{key}_std"] if r["seeds"] > 1 else 0 for r in mine],
                  marker="o", capsize=4, label=label)
  majority = [r["majority"] for r in rows if r["majority"] is not None]
  if majority:
    axes[0].axhline(majority[0], color="0.4", ls="--", lw=1, label="majority class")
  axes[1].axhline(0.5, color="0.4", ls=":", lw=1, label="chance")
  for ax, name in zip(axes, ("test accuracy", "test AUC")):
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("labelled training images")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=9)
  counts = sorted({r["seeds"] for r in rows})
  seeds = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}") + " seeds"
  set_title(fig, f"LUNA16 patches: learning from few labels (mean ± std over {seeds})",
            title_marks(rows))
  save_figure(fig, path)


def define_flags(fv) -> None:
  flags.DEFINE_string("workdir", None, "Output directory (default: runs/label_efficiency, or "
                      "runs/label_efficiency-smoke with --smoke).", flag_values=fv)
  flags.DEFINE_list("labels", None, "Labelled training images per run (default: 100,500; "
                    "with --smoke 40,100).", flag_values=fv)
  flags.DEFINE_list("seeds", ["0", "1"], "Seeds (each labels its own subset).", flag_values=fv)
  flags.DEFINE_list("models", list(MODELS), f"Models, of {', '.join(MODELS)}.", flag_values=fv)
  flags.DEFINE_integer("sgan_epochs", 5, "SGAN epochs (passes over the training split); the "
                       "other models take as many steps.", flag_values=fv)
  flags.DEFINE_string("luna_dir", None, "LUNA16 data (patch folder, raw layout or .npz); "
                      "default: the embedded synthetic CT volumes.", flag_values=fv)
  flags.DEFINE_integer("data_seed", 0, "Seed of the data split (validation hold-out), shared by "
                       "every run.", flag_values=fv)
  flags.DEFINE_bool("smoke", False, "Tiny models, little data: tests the code, not the models.",
                    flag_values=fv)
  flags.DEFINE_bool("collect", False, "Train nothing: tables and figure from the finished runs.",
                    flag_values=fv)


def main(argv=None) -> list[dict]:
  """Trains the missing runs and writes the tables and the figure; `argv`: the flags (default
  sys.argv[1:])."""
  FLAGS = cli.parse_flags(define_flags, argv, __doc__)
  platform.enable_compilation_cache()
  budgets = cli.parse_list(FLAGS.labels or (["40", "100"] if FLAGS.smoke else ["100", "500"]),
                           "labels")
  seeds = cli.parse_list(FLAGS.seeds, "seeds")
  unknown = [m for m in FLAGS.models if m not in MODELS]
  if unknown:
    raise ConfigError(f"--models: unknown {unknown}; known: {', '.join(MODELS)}")
  if FLAGS.sgan_epochs < 1:
    raise ConfigError(f"--sgan_epochs must be >= 1, got {FLAGS.sgan_epochs}")
  workdir = FLAGS.workdir or os.path.join(
      "runs", "label_efficiency-smoke" if FLAGS.smoke else "label_efficiency")
  n_train = training_images(FLAGS.luna_dir, FLAGS.data_seed, FLAGS.smoke)
  too_many = [n for n in budgets if n >= n_train]
  if too_many:
    raise ConfigError(f"--labels {too_many}: the training split has only {n_train} images, so "
                      "nothing would be left unlabelled")
  os.makedirs(workdir, exist_ok=True)
  jobs = [(n, m, s) for n in budgets for m in FLAGS.models for s in seeds]
  results: dict[tuple[int, str], list[dict]] = {}
  t0 = time.perf_counter()
  for i, (n, model, seed) in enumerate(jobs, 1):
    run_dir = seed_workdir(os.path.join(workdir, f"n{n}", model), seed)
    config = model_config(model, n, seed, luna_dir=FLAGS.luna_dir, data_seed=FLAGS.data_seed,
                          smoke=FLAGS.smoke, epochs=1)
    config.num_epochs = epochs_for(model, n, n_train, config.batch_size, FLAGS.sgan_epochs)
    path = os.path.join(run_dir, "results.json")
    if os.path.exists(path):
      finished = read_results(path)
      if finished["epochs"] != config.num_epochs:  # another --sgan_epochs: another budget
        raise ConfigError(
            f"{run_dir} holds a run of {finished['epochs']} epochs, but --sgan_epochs="
            f"{FLAGS.sgan_epochs} gives {model} {config.num_epochs} epochs with {n} labels: "
            "use another --workdir for another budget")
      results.setdefault((n, model), []).append(finished)
      continue
    if FLAGS.collect:
      log.info("n=%d %s seed %d: not finished, left out (--collect)", n, model, seed)
      continue
    log.info("[%d/%d] %d labels, %s, seed %d: %d epochs into %s", i, len(jobs), n, model, seed,
             config.num_epochs, run_dir)
    results.setdefault((n, model), []).append(runner.run(config, run_dir))
    elapsed = time.perf_counter() - t0
    log.info("label efficiency: %d/%d runs done, elapsed %s", i, len(jobs), duration(elapsed))
  if not results:
    raise UserError(f"no finished runs in {workdir}")
  rows = summarize(results)
  write_tables(rows, workdir)
  plot(rows, os.path.join(workdir, "label_efficiency.png"))
  print(open(os.path.join(workdir, "label_efficiency.md")).read())
  print(f"written: {workdir}/label_efficiency.md, label_efficiency.csv, label_efficiency.png")
  return rows


def console_main() -> None:
  """`python -m experiments.label_efficiency`."""
  cli.run(main)


if __name__ == "__main__":
  console_main()
