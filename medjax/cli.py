"""What every medjax command line shares: flags, `--help`, logging and user errors.

Every command is written one way:

    def define_flags(fv):
      flags.DEFINE_string("out", None, "...", flag_values=fv)

    def main(argv=None):
      fv = cli.parse_flags(define_flags, argv, __doc__)  # or parse_args: positional arguments too
      ...
      return result

    if __name__ == "__main__":
      cli.run(main)

`main` takes the command line without the program name (default `sys.argv[1:]`), parses it
into a FlagValues of its own (absl's global FLAGS are never touched, so tests call `main` in
process) and raises `medjax.errors.UserError` for anything the user can fix. `cli.run` is the
shell's way in: a UserError is printed as one line, `error: <message>`, with exit status 2 and no
traceback (`MEDJAX_DEBUG=1` shows the traceback). `--help` prints the module's docstring and the
flags with their defaults. Flag names are absl's (`--batch_sizes`); dashed spellings
(`--batch-sizes`) are accepted too.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from typing import Callable, NoReturn, Sequence

from absl import flags

from medjax.config import MAX_SEED
from medjax.errors import ConfigError, UserError

log = logging.getLogger("medjax")

HELP = ("--help", "-h", "--helpshort", "-?")


def setup_logging() -> None:
  """INFO lines with a time stamp on stdout; the libraries' chatter only from WARNING up."""
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                      datefmt="%H:%M:%S", stream=sys.stdout, force=True)
  for noisy in ("absl", "jax._src", "orbax", "orbax.checkpoint"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def normalize_argv(args: Sequence[str]) -> list[str]:
  """`--batch-sizes=20` -> `--batch_sizes=20`: absl knows flags by their underscore names only.

  Only the flag names change (values, positional arguments and everything after a bare `--` are
  left alone); `args` is the command line without the program name.
  """
  out = list(args)
  for i, arg in enumerate(out):
    if arg == "--":
      break
    if arg.startswith("-") and len(arg) > 1 and not (arg[1].isdigit() or arg[1] == "."):
      dashes = 2 if arg.startswith("--") else 1
      name, sep, value = arg[dashes:].partition("=")
      out[i] = "-" * dashes + name.replace("-", "_") + sep + value
  return out


def flags_help(fv: flags.FlagValues, skip: Sequence[str] = ()) -> str:
  """One entry per flag of `fv` (in definition order, without --help and `skip`):
  `--name: help (default: value)`."""
  lines, seen = [], set()
  for name in fv:
    flag = fv[name]
    if flag.name in seen or flag.name == "help" or flag.name in skip or "." in flag.name:
      continue
    seen.add(flag.name)
    default = "" if flag.default is None else f" (default: {flag.default_as_str})"
    lines.append(textwrap.fill(f"--{flag.name}: {flag.help}{default}", 100,
                               initial_indent="  ", subsequent_indent="      "))
  return "\n".join(lines)


def parse_args(define: Callable[[flags.FlagValues], None], argv: Sequence[str] | None,
               doc: str = "", *, more_help: str = "",
               skip_in_help: Sequence[str] = ()) -> tuple[flags.FlagValues, list[str]]:
  """(the flags `define(fv)` adds, parsed from `argv`; the positional arguments). `argv` is the
  command line without the program name (None: `sys.argv[1:]`). `--help` prints `doc`, the flags
  and `more_help`, and exits with status 0; a flag error is a UserError."""
  argv = normalize_argv(sys.argv[1:] if argv is None else argv)
  fv = flags.FlagValues()
  define(fv)
  if any(a in HELP for a in argv):
    print(doc.rstrip() + "\n\nflags:\n" + flags_help(fv, skip_in_help) + more_help)
    sys.exit(0)
  try:
    args = fv(["medjax", *argv])[1:]
  except flags.Error as e:
    raise UserError(str(e)) from None
  return fv, args


def parse_flags(define: Callable[[flags.FlagValues], None], argv: Sequence[str] | None,
                doc: str = "", **help_options) -> flags.FlagValues:
  """`parse_args` for a command that takes flags only."""
  fv, args = parse_args(define, argv, doc, **help_options)
  if args:
    raise UserError(f"unexpected arguments: {args} (flags are --name=value)")
  return fv


def fail(message: str) -> NoReturn:
  """Prints `error: message` and exits with status 2, skipping the interpreter's shutdown so that
  no library (orbax's threads, TensorFlow) adds noise after the message."""
  sys.stdout.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  logging.shutdown()
  os._exit(2)


def run(main: Callable[[Sequence[str]], object], argv: Sequence[str] | None = None) -> NoReturn:
  """Runs a command's `main(argv)` from the shell (`argv`: default `sys.argv[1:]`) with logging
  set up; a UserError is one line on stderr and exit status 2, an int that `main` returns is the
  exit status (anything else: 0)."""
  setup_logging()
  try:
    status = main(sys.argv[1:] if argv is None else list(argv))
  except UserError as e:
    if os.environ.get("MEDJAX_DEBUG"):
      raise
    fail(str(e))
  sys.exit(status if isinstance(status, int) else 0)


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
  seeds = parse_list(value, name)
  bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
  if bad:
    raise ConfigError(f"--{name}: seeds must be in 0..{MAX_SEED}, got {bad[0]}")
  twice = sorted({s for s in seeds if seeds.count(s) > 1})
  if twice:
    raise ConfigError(f"--{name}: seed {', '.join(map(str, twice))} is listed twice; each seed "
                      "trains one model, so list distinct seeds")
  return seeds


def config_help(config, notes: dict[str, str]) -> str:
  """The config's fields as a nested tree with their defaults and `notes` (dotted path -> what
  the field does)."""
  lines = []

  def walk(d, prefix, indent):
    for key in sorted(d.keys(), key=lambda k: (hasattr(d[k], "keys"), k)):
      value = d[key]
      path = prefix + key
      if hasattr(value, "keys"):
        lines.append(f"{' ' * indent}{key}:")
        walk(value, path + ".", indent + 2)
      else:
        note = notes.get(path, "")
        lines.append(f"{' ' * indent}{key} = {value!r}" + (f"    # {note}" if note else ""))

  walk(config, "", 2)
  return "\n".join(lines)
