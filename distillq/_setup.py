"""Process-wide jax settings, applied once before jax is first imported by a command.

- XLA:CPU compile flags: XLA compiles every fusion as its own LLVM module on CPU; lowering
  the backend optimisation level and skipping expensive LLVM passes halves compile time with
  no measured runtime loss (README "Speed"). Applied only when XLA_FLAGS is unset and no
  accelerator plugin is installed.
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
_done = False


def _has_accelerator_plugin() -> bool:
    return any(importlib.util.find_spec(p) is not None for p in _ACCEL_PLUGINS)


def cache_dir() -> Path | None:
    v = os.environ.get("DISTILLQ_CACHE_DIR", "")
    if v.lower() in ("off", "0", "none", "false"):
        return None
    return Path(v) if v else Path.home() / ".cache" / "distillq" / "jax"


def configure() -> None:
    global _done
    if _done:
        return
    _done = True
    if "XLA_FLAGS" not in os.environ and not _has_accelerator_plugin():
        os.environ["XLA_FLAGS"] = CPU_XLA_FLAGS
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
