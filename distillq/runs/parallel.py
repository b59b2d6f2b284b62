"""Seeds across devices and hosts.

- Devices: the leading (seed) axis of every state leaf is sharded over the local devices with
  a NamedSharding on a 1-axis mesh. The mesh uses Auto axis types: jax's default Explicit
  mesh makes gymnax rollouts fail (jax 0.10: a scan carry that starts unbatched). The jitted
  chunk then runs SPMD, each device on its own seeds; nothing crosses devices.
  DISTILLQ_SHARD=0 turns it off.
- Hosts: jax's distributed runtime (`jax.distributed.initialize`, gloo collectives on CPU).
  Each process trains a contiguous share of the seeds on its local devices; per-chunk metrics
  (for progress and the early-stop decision), signals and the final results are gathered with
  `multihost_utils.process_allgather`, so every process takes the same decisions, and process 0
  alone writes the run directory.
"""

from __future__ import annotations

import os
from typing import Any

from distillq.errors import ConfigError

ENV_COORD, ENV_NPROC, ENV_PID = ("DISTILLQ_COORDINATOR", "DISTILLQ_NUM_PROCESSES",
                                 "DISTILLQ_PROCESS_ID")


def init(coordinator: str | None = None, num_processes: int | None = None,
         process_id: int | None = None) -> None:
    """Join a multi-process run when asked to (flags, else DISTILLQ_* environment)."""
    coordinator = coordinator or os.environ.get(ENV_COORD)
    if num_processes is None and os.environ.get(ENV_NPROC):
        num_processes = _int(ENV_NPROC, os.environ[ENV_NPROC])
    if process_id is None and os.environ.get(ENV_PID):
        process_id = _int(ENV_PID, os.environ[ENV_PID])
    if coordinator is None and num_processes is None and process_id is None:
        return
    if coordinator is None or num_processes is None or process_id is None:
        raise ConfigError("multi-process runs need --coordinator, --num-processes and "
                          "--process-id (or DISTILLQ_COORDINATOR/NUM_PROCESSES/PROCESS_ID)")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ConfigError(f"process id {process_id} is not in 0..{num_processes - 1}")
    check_address(coordinator)
    if num_processes == 1:
        return
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from distillq.runs import signals

    try:
        signals.blocking(jax.distributed.initialize, coordinator_address=coordinator,
                         num_processes=num_processes, process_id=process_id,
                         initialization_timeout=120)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot join the distributed run at {coordinator}: "
                          f"{str(e).splitlines()[0][:200]}") from None


def check_address(address: str) -> None:
    """HOST:PORT with a host name or address and a port in 1..65535."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host   # [::1]:1234
    ok = bool(sep and host) and port.isdigit() and 1 <= int(port) <= 65535 and all(
        c.isalnum() or c in ".-_:" for c in host) and len(address) <= 300
    if not ok:
        shown = address if len(address) <= 60 else address[:60] + "..."
        raise ConfigError(f"--coordinator must be HOST:PORT (port 1..65535), got {shown!r}")


def _int(name: str, v: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {v!r}") from None


def process_count() -> int:
    import jax

    return jax.process_count()


def is_main() -> bool:
    import jax

    return jax.process_index() == 0


def local_slice(n: int) -> slice:
    """This process's contiguous share of n students/seeds."""
    import jax

    p, i = jax.process_count(), jax.process_index()
    if n % p:
        raise ConfigError(f"{n} seeds do not split evenly over {p} processes")
    k = n // p
    return slice(i * k, (i + 1) * k)


def shard(tree: Any) -> Any:
    """Shard the leading axis of every leaf over the local devices (largest even split)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    leaves = jax.tree.leaves(tree)
    d = devices_used(leaves[0].shape[0]) if leaves else 1
    if d <= 1:
        return tree
    mesh = Mesh(np.array(jax.local_devices()[:d]), ("seed",))   # legacy Mesh: Auto axis types
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("seed")))


def devices_used(n: int) -> int:
    """How many local devices n seeds are sharded over: the most that divide n evenly."""
    import jax

    if os.environ.get("DISTILLQ_SHARD", "1") == "0":
        return 1
    return max(k for k in range(1, len(jax.local_devices()) + 1) if n % k == 0)


def gather(tree: Any) -> Any:
    """Host numpy copy of a per-seed pytree, concatenated over processes along axis 0."""
    import jax

    tree = jax.device_get(tree)
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return jax.device_get(multihost_utils.process_allgather(tree, tiled=True))


def any_process(flags: tuple[bool, ...]) -> tuple[bool, ...]:
    """Each flag OR-ed over all processes, in one all-gather."""
    import jax
    import numpy as np

    if jax.process_count() == 1:
        return tuple(bool(f) for f in flags)
    from jax.experimental import multihost_utils

    g = np.asarray(multihost_utils.process_allgather(np.array([flags], bool), tiled=True))
    return tuple(bool(x) for x in g.any(axis=0))


def broadcast_text(text: str) -> str:
    """Process 0's string, on every process."""
    import jax
    import numpy as np

    if jax.process_count() == 1:
        return text
    from jax.experimental import multihost_utils

    buf = np.zeros(1024, np.uint8)
    raw = text.encode()[:1024]
    buf[: len(raw)] = np.frombuffer(raw, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return bytes(out[out != 0].tolist()).decode()
