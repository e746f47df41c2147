"""What every medjax command line shares: absl flags, `--help`, logging and user errors.

    def main(argv): ...
    if __name__ == "__main__":
      cli.run(main)

A `medjax.errors.UserError` (bad config, data or workdir) is printed as one line,
`error: <message>`, with exit status 2 and no traceback; `MEDJAX_DEBUG=1` shows the traceback.
`--help` lists the command's flags with their defaults.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
import textwrap
from typing import Callable

from medjax.errors import ConfigError, UserError

log = logging.getLogger("medjax")


def setup_logging() -> None:
  """INFO lines with a time stamp on stdout; the libraries' chatter only from WARNING up."""
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                      datefmt="%H:%M:%S", stream=sys.stdout, force=True)
  for noisy in ("absl", "jax._src", "orbax", "orbax.checkpoint"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def show_in_help(*names: str) -> None:
  """Makes flags defined outside the main module (e.g. by the shared experiment runner) part of
  the main module's `--help`."""
  from absl import flags
  for name in names:
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])


def flags_help(names) -> str:
  """One entry per flag of `names` (absl's global FLAGS): `--name: help (default: value)`."""
  from absl import flags
  lines = []
  for name in names:
    flag = flags.FLAGS[name]
    default = "" if flag.default is None else f" (default: {flag.default_as_str})"
    lines.append(textwrap.fill(f"--{name}: {flag.help}{default}", 100, initial_indent="  ",
                               subsequent_indent="      "))
  return "\n".join(lines)


def fail(message: str) -> None:
  """Prints `error: message` and exits with status 2, skipping the interpreter's shutdown so that
  no library (orbax's threads, TensorFlow) adds noise after the message."""
  sys.stdout.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  logging.shutdown()
  os._exit(2)


def run(main: Callable, argv=None) -> None:
  """absl's `app.run(main)` with user errors reported as one line. Run from a console script
  (whose `__main__` is a generated wrapper), `--help` still shows the docstring and the flags of
  the module that defines `main`."""
  from absl import app, flags
  module = sys.modules.get(main.__module__)
  main_module = sys.modules["__main__"]
  if module is not None and module is not main_module:
    if not main_module.__doc__:
      main_module.__doc__ = module.__doc__
    show_in_help(*(f.name for f in flags.FLAGS.get_flags_for_module(module.__name__)))

  def guarded(args):
    try:
      return main(args)
    except UserError as e:
      if os.environ.get("MEDJAX_DEBUG"):
        raise
      fail(str(e))

  args = sys.argv if argv is None else argv
  if any(a in ("--help", "-h", "--helpshort", "-?") for a in args[1:]):
    app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)  # absl's own --help exits 1
  app.run(guarded, argv=argv)


def parse_flags(define: Callable, argv, doc: str = ""):
  """A private absl FlagValues with the flags `define(fv)` adds, parsed from `argv` (flags only,
  no program name); None after printing the help for --help/-h. Flag errors are UserErrors."""
  from absl import flags
  fv = flags.FlagValues()
  define(fv)
  flags.DEFINE_boolean("help", False, "Show this help.", short_name="h", flag_values=fv)
  try:
    extra = fv(["medjax", *argv])[1:]
  except flags.Error as e:
    raise UserError(str(e)) from None
  if fv.help:
    print(doc.rstrip() + "\n\nflags:\n" + fv.get_help())
    return None
  if extra:
    raise UserError(f"unexpected arguments: {extra} (flags are --name=value)")
  return fv


def guard(main: Callable, *args):
  """Runs `main(*args)`; a UserError becomes one line on stderr and exit status 2."""
  try:
    return main(*args)
  except UserError as e:
    if os.environ.get("MEDJAX_DEBUG"):
      raise
    fail(str(e))


def parse_list(value, name: str, kind=int) -> list:
  """`--name=0,1,2` -> [0, 1, 2]; a bad element is a UserError naming the flag."""
  items = value if isinstance(value, (list, tuple)) else str(value).split(",")
  out = []
  for item in items:
    item = str(item).strip()
    try:
      out.append(kind(item))
    except ValueError:
      raise UserError(f"--{name}: {item!r} is not a valid {kind.__name__} "
                      f"(expected e.g. --{name}=0,1,2)") from None
  if not out:
    raise UserError(f"--{name} is empty")
  return out


def parse_seeds(value, name: str = "seeds") -> list[int]:
  """`--seeds=0,1,2` -> [0, 1, 2]: distinct seeds in 0..MAX_SEED, else a ConfigError naming the
  flag (`0,0` would train one model twice and report it as an ensemble of two)."""
  from medjax.config import MAX_SEED
  seeds = parse_list(value, name)
  bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
  if bad:
    raise ConfigError(f"--{name}: seeds must be in 0..{MAX_SEED}, got {bad[0]}")
  twice = sorted({s for s in seeds if seeds.count(s) > 1})
  if twice:
    raise ConfigError(f"--{name}: seed {', '.join(map(str, twice))} is listed twice; each seed "
                      "trains one model, so list distinct seeds")
  return seeds


def _field_comments() -> dict[str, str]:
  """The comment beside each field in medjax/config.py, keyed by dotted path."""
  from medjax import config as config_lib
  comments, block, above = {}, "", []
  for line in inspect.getsource(config_lib).splitlines():
    m = re.match(r"def (\w+)_defaults\(", line)
    if m:
      block = m.group(1) + "."
    elif line.startswith("def "):
      block = ""
    if re.match(r"\s*#", line):  # a comment block above a field describes it
      above.append(line.strip().lstrip("#").strip())
      continue
    m = re.match(r"\s*c\.([\w.]+)\s*=([^#]*)(?:#\s*(.+))?$", line)
    if m and not m.group(2).strip().startswith("ml_collections.ConfigDict"):
      note = m.group(3) or " ".join(above)
      if note:
        comments[block + m.group(1)] = note.strip()
    above = []
  return comments


def config_help(config) -> str:
  """The config's fields as a nested tree with defaults and the comment from config.py."""
  comments = _field_comments()
  lines = []

  def walk(d, prefix, indent):
    for key in sorted(d.keys(), key=lambda k: (hasattr(d[k], "keys"), k)):
      value = d[key]
      path = prefix + key
      if hasattr(value, "keys"):
        lines.append(f"{' ' * indent}{key}:")
        walk(value, path + ".", indent + 2)
      else:
        note = comments.get(path, "")
        lines.append(f"{' ' * indent}{key} = {value!r}" + (f"    # {note}" if note else ""))

  walk(config, "", 2)
  return "\n".join(lines)
