"""Process-wide jax settings, applied once before jax is first imported by a command.

- XLA:CPU flags chosen by run length: XLA compiles every fusion as its own LLVM module on
  CPU; lowering the backend optimisation level and skipping expensive LLVM passes halves
  compile time, which is most of a short run. A long run keeps XLA's defaults: their code
  trained MountainCar's DQN (256-256, 4 updates a step) 42% faster and Breakout's PQN 51%
  faster for 1.3-1.5 s more compilation, while CartPole's default run gained nothing and
  compiled 2 s longer (README "Speed"). Long means the budget's gradient updates read at
  least LONG_RUN_ROWS samples (config.TeacherConfig.update_rows; DISTILLQ_LONG_RUN_ROWS
  overrides). Applied only when XLA_FLAGS is unset and no accelerator plugin is installed;
  jax reads XLA_FLAGS when its backend starts, so this runs before any array exists
  (importing jax is fine).
- Both cores for a long run of several seeds: XLA:CPU gives one device, and one run used
  ~1.4 of the 2 cores. A long run whose seeds split evenly over k > 1 of the cores it may use
  gets k host devices (--xla_force_host_platform_device_count), and runs/parallel.py shards
  the seeds over them: Breakout's PQN, 4 seeds, 1M steps, trained in 11.6 s instead of 18.4 s.
  Only for networks whose hidden layers are at most SHARD_MAX_WIDTH wide (an MLP or linear):
  a wider layer's matmuls already keep both cores busy on one device, and sharding slowed
  them (4 seeds: Asterix's 256-256+ln PQN 69k -> 52k env steps/s, MountainCar's 256-256 DQN
  11.9k -> 10.5k). One seed keeps one device (two made it slower: 7.6 s against 6.3 s).
  DISTILLQ_SHARD=0 keeps one device.
- jax's persistent compilation cache (DISTILLQ_CACHE_DIR, default ~/.cache/distillq/jax;
  DISTILLQ_CACHE_DIR=off disables it): a repeated command skips compilation.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

CPU_XLA_FLAGS = ("--xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true "
                 "--xla_cpu_use_fusion_emitters=false")
_ACCEL_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "libtpu", "jax_rocm60_plugin",
                  "jax_rocm7_plugin")
LONG_RUN_ROWS = 10_000_000
_done = False
_ours = False       # XLA_FLAGS was set here (not by the user)


def _has_accelerator_plugin() -> bool:
    return any(importlib.util.find_spec(p) is not None for p in _ACCEL_PLUGINS)


def cache_dir() -> Path | None:
    v = os.environ.get("DISTILLQ_CACHE_DIR", "")
    if v.lower() in ("off", "0", "none", "false"):
        return None
    return Path(v) if v else Path.home() / ".cache" / "distillq" / "jax"


def long_run(update_rows: int) -> bool:
    """DISTILLQ_LONG_RUN_ROWS overrides the threshold (1: every run is long; the tests)."""
    v = os.environ.get("DISTILLQ_LONG_RUN_ROWS", "")
    return update_rows >= (int(v) if v.isdigit() else LONG_RUN_ROWS)


HOST_DEVICES = "--xla_force_host_platform_device_count="
SHARD_MAX_WIDTH = 128


def narrow(network: str) -> bool:
    """An MLP (or linear) network spec whose hidden layers are at most SHARD_MAX_WIDTH wide."""
    spec = network.partition("+")[0].strip()
    if spec == "linear":
        return True
    sizes = spec.split(",")
    return all(x.strip().isdigit() for x in sizes) and max(map(int, sizes)) <= SHARD_MAX_WIDTH


def host_devices(seeds: int) -> int:
    """How many host devices a long CPU run of `seeds` seeds gets: the most cores (of those
    this process may use) that the seeds split over evenly."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    return max(k for k in range(1, max(1, min(cores, seeds)) + 1) if seeds % k == 0)


def xla_flags() -> str:
    """The XLA flags this process runs with, for a run's meta.json: "compile-speed" (ours, a
    short run), "default" (XLA's, a long run), "default, N host devices" (a long run of
    several seeds) or the user's own XLA_FLAGS."""
    v = os.environ.get("XLA_FLAGS", "")
    if v == CPU_XLA_FLAGS:
        return "compile-speed"
    if v.startswith(HOST_DEVICES) and _ours:
        return f"default, {v[len(HOST_DEVICES):]} host devices"
    return v or "default"


def configure(update_rows: int = 0, seeds: int = 1, network: str = "") -> None:
    """Once per process, before jax's backend starts: the XLA flags for a run of `seeds`
    seeds of `network` whose updates read `update_rows` samples (0: a short command), and
    the compilation cache."""
    global _done, _ours
    if _done:
        return
    _done = True
    if "XLA_FLAGS" not in os.environ and not _has_accelerator_plugin():
        _ours = True
        if not long_run(update_rows):
            os.environ["XLA_FLAGS"] = CPU_XLA_FLAGS
        elif os.environ.get("DISTILLQ_SHARD", "1") != "0" and host_devices(seeds) > 1 \
                and narrow(network):
            os.environ["XLA_FLAGS"] = f"{HOST_DEVICES}{host_devices(seeds)}"
    import jax

    d = cache_dir()
    if d is not None:
        try:
            d.mkdir(parents=True, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", str(d))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        except OSError:
            pass  # an unwritable cache only costs compile time
