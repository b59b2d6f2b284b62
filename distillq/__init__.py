"""distillq: knowledge distillation for deep RL, fully jitted in JAX.

This module stays import-light on purpose: `distillq --help` and argument errors must not
import jax or gymnax (see README, "Start-up cost").
"""

__version__ = "0.1.0"
