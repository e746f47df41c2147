"""`python -m medjax.bench [flags]`: the train-step benchmark, `medjax.benchmarks.step`."""

from medjax import cli
from medjax.benchmarks import step


def console_main() -> None:
  """`medjax-bench` and `python -m medjax.bench`."""
  cli.run(step.main)


if __name__ == "__main__":
  console_main()
