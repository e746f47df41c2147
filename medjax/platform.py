"""The platform policy: every choice that depends on the backend is made here, once.

XLA:CPU and accelerators want different formulations of the same computation (measured in
`medjax/benchmarks/RESULTS.md`):
- `cpu_layers`: convolutions as matmuls where XLA:CPU is slow (`medjax.models.layers`, the
  SGAN's `ConvTranspose4x4` gradients), and `xla_kernel_grad_min_output_pixels`: where, by CPU
  vendor, XLA's own kernel gradient is the faster,
- `device_resident_default`: the training split on device, chunks of steps as one `lax.scan`,
- `stack_seeds_default`: seeds of a CNN/ResNet trained together in one vmapped step.
Each is on for one kind of backend and off for the other. `MEDJAX_PLATFORM=cpu|accelerator`
overrides the detected kind (e.g. to test the accelerator paths on a CPU); per-run config fields
(`device_resident`, `--stack_seeds`) override single choices.
"""

from __future__ import annotations

import functools
import os

from medjax.errors import ConfigError

KINDS = ("cpu", "accelerator")


def kind() -> str:
  """'cpu' or 'accelerator' (GPU, TPU): MEDJAX_PLATFORM if set, else JAX's default backend."""
  forced = os.environ.get("MEDJAX_PLATFORM")
  if forced:
    if forced not in KINDS:
      raise ConfigError(f"MEDJAX_PLATFORM must be one of {KINDS}, got {forced!r}")
    return forced
  import jax
  return "cpu" if jax.default_backend() == "cpu" else "accelerator"


def is_cpu() -> bool:
  return kind() == "cpu"


def cpu_layers() -> bool:
  """Convolutions and convolution gradients XLA:CPU runs slowly are computed as shifted slices
  + matmuls."""
  return is_cpu()


@functools.lru_cache(maxsize=None)
def _cpuinfo(field: str) -> str:
  """The first `field` of /proc/cpuinfo ('' where there is none)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.split(":", 1)[0].strip() == field:
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return ""


def cpu_vendor() -> str:
  """The CPU's vendor id as /proc/cpuinfo gives it ('GenuineIntel', 'AuthenticAMD'); '' where
  unknown. MEDJAX_CPU_VENDOR overrides it (to test a vendor's choices on another machine)."""
  forced = os.environ.get("MEDJAX_CPU_VENDOR")
  return forced if forced is not None else _cpuinfo("vendor_id")


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo on Linux): hosts of one name can differ in it, and the
  CPU figures with it."""
  import platform as stdlib_platform
  return _cpuinfo("model name") or stdlib_platform.processor() or "unknown"


def host() -> dict:
  """The CPU a result was computed on: its timings, and on CPU the formulations, depend on it."""
  return {"cpu": cpu_model(), "cpu_vendor": cpu_vendor(), "cpu_count": os.cpu_count()}


# Per CPU vendor: stride-1 convolutions with output maps of at least this many pixels keep
# XLA:CPU's own kernel gradient instead of the tap matmuls: on AMD EPYC (Zen 4) it is the
# faster from 8x8 maps on, on Intel Xeon (AVX-512) the slower. The measurements behind the
# threshold are in medjax/benchmarks/RESULTS.md (the 2026-12-04 sections).
XLA_KERNEL_GRAD_MIN_OUTPUT_PIXELS = {"AuthenticAMD": 64}


def xla_kernel_grad_min_output_pixels() -> int | None:
  """On CPU: the output map size from which a stride-1 convolution's kernel gradient is XLA's
  own (None: never; `medjax.models.layers.Conv`)."""
  return XLA_KERNEL_GRAD_MIN_OUTPUT_PIXELS.get(cpu_vendor()) if is_cpu() else None


def device_resident_default() -> bool:
  """XLA:CPU runs a scan of train steps slower than separate jitted steps."""
  return not is_cpu()


def stack_seeds_default() -> bool:
  """XLA:CPU runs a vmapped step of N models slower than N separate steps."""
  return not is_cpu()


def default_workers() -> int:
  """Processes for CPU-bound data preparation (volume reading): one per core, up to 8."""
  return max(1, min(os.cpu_count() or 1, 8))


# Programs that compile faster are not written to the cache. 0: all are (JAX's default, 1 s,
# left the DBN's many small programs to compile again in every process; the measured warm
# starts and cache sizes are in medjax/benchmarks/RESULTS.md).
CACHE_MIN_COMPILE_SECONDS = 0.0


def enable_compilation_cache() -> None:
  """Persistent XLA cache ($MEDJAX_JAX_CACHE, default ~/.cache/medjax/jax), used by every command
  that compiles models: a re-run loads its compiled steps instead of compiling them again.
  Programs that compile in less than $MEDJAX_JAX_CACHE_MIN_SECONDS (default
  CACHE_MIN_COMPILE_SECONDS) are compiled each time instead."""
  import jax
  cache = os.environ.get("MEDJAX_JAX_CACHE",
                         os.path.join(os.path.expanduser("~"), ".cache", "medjax", "jax"))
  value = os.environ.get("MEDJAX_JAX_CACHE_MIN_SECONDS", str(CACHE_MIN_COMPILE_SECONDS))
  try:
    min_seconds = float(value)
  except ValueError:
    raise ConfigError(f"MEDJAX_JAX_CACHE_MIN_SECONDS must be a number of seconds, got "
                      f"{value!r}") from None
  if not min_seconds >= 0:
    raise ConfigError(f"MEDJAX_JAX_CACHE_MIN_SECONDS must be >= 0, got {value!r}")
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_seconds)
