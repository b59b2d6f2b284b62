"""Sizes checked before any work: integer ranges of the jitted loop and the memory a run needs.

A run that cannot fit is refused with one line giving the estimate (exit 2), before a run
dir is created or anything compiles. The estimate counts what the jitted loop keeps per
student (seed x sweep point) and multiplies by the students:
  replay buffer     rows x envs x bytes per transition (replay.Layout; a view student's
                    stacked views beside each row: uint8 frames, float32 numbers)
  networks          params x 6 (params, target or projection, best params, Adam's two
                    moments, gradients) x 4 bytes, plus the teachers' params per student
  activations       batch x window x the network's widest layer, forward and backward
and compares it with the memory of the machine (host RAM, or the accelerator's own when
jax runs on one). The JIT's own temporaries are not counted; the check refuses a run that
needs more than 80% of the memory.
"""

from __future__ import annotations

import math
import os

from distillq.errors import ConfigError

INT32_MAX = 2**31 - 1
MEMORY_SHARE = 0.8


def check_ints(what: str, **values: int) -> None:
    """Counters the jitted loop keeps as int32 (iterations, updates, indices)."""
    for name, v in values.items():
        if v > INT32_MAX:
            raise ConfigError(f"{what}: {name} = {v:,} is beyond the 2^31 - 1 the jitted loop "
                              "can count; use a smaller budget")


def check_seeds(first: int, count: int) -> None:
    if first + count - 1 > INT32_MAX:
        raise ConfigError(f"seeds {first}..{first + count - 1} go beyond 2^31 - 1 (PRNG keys are "
                          "made from 32-bit seeds; larger ones would repeat smaller ones)")


def machine_memory() -> tuple[int, str]:
    """(bytes available to a run, where): the accelerator's memory when jax uses one,
    otherwise the host's available RAM."""
    import jax

    dev = jax.local_devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"{dev.device_kind} memory"
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
        return info.get("MemAvailable", info["MemTotal"]), "available RAM"
    except (OSError, KeyError, ValueError, IndexError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM"


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**28 else f"{n / 2**20:.0f} MB"


def widest(net_spec: dict) -> int:
    """The widest activation per sample (flattened), for the activation estimate."""
    from distillq.core import networks

    return max(networks.widths(net_spec))


def estimate(*, students: int, buffer_rows: int, num_envs: int, transition_bytes: int,
             params: int, teacher_params: int = 0, batch: int, window: int,
             width: int) -> dict[str, int]:
    per = {
        "replay buffer": buffer_rows * num_envs * transition_bytes,
        "networks": 6 * params * 4 + teacher_params * 4,
        "activations": 3 * batch * window * width * 4,
    }
    return {k: v * students for k, v in per.items()}


def check_memory(what: str, parts: dict[str, int]) -> None:
    total = sum(parts.values())
    avail, where = machine_memory()
    if total > MEMORY_SHARE * avail:
        detail = ", ".join(f"{k} {_gb(v)}" for k, v in parts.items() if v)
        raise ConfigError(f"{what} needs about {_gb(total)} ({detail}); {where} is "
                          f"{_gb(avail)}: use fewer seeds or sweep points, a smaller buffer "
                          "or a smaller network")


def transition_bytes(layout) -> int:
    return (2 * layout.obs_dim + 16) if layout.binary_obs else 4 * layout.width


def view_bytes(view) -> int:
    """Bytes per transition of a view student's stored inputs (views.buffer): its stacked
    view beside each replay row (uint8 frames for pixels, float32 numbers otherwise)."""
    if view is None:
        return 0
    return view.dim * (1 if view.pixels else 4)


def preflight_teacher(cfg, trainer) -> None:
    """Everything train-teacher can check before creating a run dir."""
    from distillq.core import networks

    check_seeds(cfg.seed, cfg.seeds)
    pqn = cfg.algo == "pqn"      # a rollout of num_envs x pqn_steps, minibatches of it
    check_ints("train-teacher", total_iterations=cfg.total_iterations + cfg.chunk_iterations,
               total_updates=cfg.total_updates,
               buffer_entries=cfg.stored_rows * cfg.num_envs)
    check_memory("train-teacher", estimate(
        students=cfg.seeds, buffer_rows=cfg.stored_rows, num_envs=cfg.num_envs,
        transition_bytes=transition_bytes(trainer.layout),
        params=networks.param_count(trainer.net_spec),
        batch=cfg.num_envs * cfg.pqn_steps // cfg.pqn_minibatches if pqn else cfg.batch_size,
        window=1 if pqn else cfg.n_step + 2, width=widest(trainer.net_spec)))


def preflight_distill(cfg, distiller, teacher_spec: dict, students: int, k: int) -> None:
    """Everything distill can check before creating a run dir (k: teachers per student)."""
    from distillq.core import networks

    check_seeds(cfg.seed, students)
    check_ints("distill", total_iterations=cfg.total_iterations + cfg.chunk_iterations,
               total_updates=cfg.total_updates,
               buffer_entries=cfg.buffer_rows * cfg.num_envs)
    check_memory("distill", estimate(
        students=students, buffer_rows=cfg.buffer_rows, num_envs=cfg.num_envs,
        transition_bytes=transition_bytes(distiller.layout) + view_bytes(distiller.view),
        params=networks.param_count(distiller.net_spec),
        teacher_params=k * networks.param_count(teacher_spec), batch=cfg.batch_size,
        window=1 + 2 * k, width=max(widest(distiller.net_spec), widest(teacher_spec))))


def preflight_multitask(cfg, layouts, net_spec: dict, teacher_specs: list[dict],
                        students: int) -> None:
    """distill --multitask: k buffers (one per env), the shared student, k teachers."""
    from distillq.core import networks

    check_seeds(cfg.seed, students)
    check_ints("distill", total_iterations=cfg.total_iterations + cfg.chunk_iterations,
               total_updates=cfg.total_updates,
               buffer_entries=cfg.buffer_rows * cfg.num_envs * len(layouts))
    check_memory("distill", estimate(
        students=students, buffer_rows=cfg.buffer_rows, num_envs=cfg.num_envs,
        transition_bytes=sum(transition_bytes(lay) for lay in layouts),
        params=networks.param_count(net_spec),
        teacher_params=sum(networks.param_count(s) for s in teacher_specs),
        batch=cfg.batch_size * len(layouts), window=3,
        width=max([widest(net_spec), *(widest(s) for s in teacher_specs)])))


def preflight_evaluate(run_meta: dict, episodes: int, chunk: int) -> None:
    """evaluate: the episodes of one jitted call (one chunk) for every seed at once."""
    from distillq.core import networks

    seeds = len(run_meta["seeds"])
    spec = run_meta["network"]
    obs = math.prod(networks.input_shape(spec))
    check_memory("evaluate", {"episodes in flight": seeds * min(episodes, chunk) * 4 * (
        2 * obs + widest(run_meta["network"]) + 16) * 3})
