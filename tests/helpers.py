"""What tests share: tiny configs, the CLI in-process, and the jitted pieces of a System."""

from __future__ import annotations

import contextlib
import io

from distillq import config

TINY_TEACHER = dict(num_envs=4, total_steps=1024, learning_starts=64, buffer_size=512,
                    batch_size=32, chunk_steps=64, eval_episodes=2, final_episodes=4,
                    network="32,16", n_step=3, target_update=20)
TINY_DISTILL = dict(num_envs=4, total_steps=512, learning_starts=32, buffer_size=256,
                    batch_size=32, chunk_steps=32, eval_episodes=2, final_episodes=4,
                    network="16")


def tiny_teacher(**kw) -> config.TeacherConfig:
    return config.build(config.TeacherConfig, {**TINY_TEACHER, "seeds": 2, **kw})


def tiny_distill(**kw) -> config.DistillConfig:
    return config.build(config.DistillConfig, {**TINY_DISTILL, **kw})


def invoke(args: list[str], stdin: str = "") -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    from distillq import cli

    old = cli.sys.stdin
    cli.sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(args)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        cli.sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def one_line_error(args, stdin="") -> str:
    code, out, err = invoke(args, stdin)
    assert code == 2, (code, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("distillq: error: "), err
    assert "Traceback" not in err and out == ""
    return lines[0]


def chunk(system, vmapped: bool = False):
    """The System's jitted chunk: chunk(state, ctx, t0) (vmapped: leading member axis)."""
    import jax

    from distillq.core import loop

    fn = loop.make_chunk(system)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None)) if vmapped else fn)


def trained_q(algo, cfg):
    """Train a teacher (dqn.make / pqn.make) from PRNGKey(0) over its whole budget, chunk by
    chunk (every chunk finite); its greedy Q-function obs -> Q as numpy."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from distillq.core import networks

    state = jax.jit(algo.system.init)(jax.random.PRNGKey(0))
    go = chunk(algo.system)
    for c in range(0, cfg.total_iterations, cfg.chunk_iterations):
        state, m = go(state, None, jnp.int32(c))
        assert bool(m.finite)
    net = networks.build(algo.net_spec)
    return lambda obs: np.asarray(net.apply(state.learner.params,
                                            jnp.asarray(obs, jnp.float32)))


def teaching(run, cfg, student: int = 0, seed_index=(0,)):
    """One student's Teaching (its teacher params and first sweep point) from a teacher run
    (seed_index None: the ensemble of the run's seeds)."""
    import jax

    from distillq.core import student as S
    from distillq.runs import teachers

    tp = teachers.per_student_params([run], None if seed_index is None else list(seed_index),
                                     1)
    hyper = S.hyper_arrays(cfg.sweep_points[:1], cfg.term_names)
    return S.Teaching(jax.tree.map(lambda x: x[student], tp),
                      jax.tree.map(lambda x: x[0], hyper))


def same_tree(a, b) -> bool:
    import jax
    import numpy as np

    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
