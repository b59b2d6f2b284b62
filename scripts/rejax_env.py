"""The gymnax env as rejax 0.1.3 expects it (the peers of `make bench`).

rejax unpacks gymnax's old 5-value `step`; gymnax 1.0 returns 6 values, so the env is wrapped
in gymnax's LegacyStepAPIWrapper, with a __getattr__ guard: the stock wrapper recurses
forever under the deepcopy in rejax's `create`.
"""


def make(env_id: str):
    """(wrapped env, env params) of gymnax.make(env_id)."""
    import gymnax
    from gymnax.wrappers import LegacyStepAPIWrapper

    class Legacy(LegacyStepAPIWrapper):
        def __getattr__(self, name):
            if name == "_env":
                raise AttributeError(name)
            return super().__getattr__(name)

    env, params = gymnax.make(env_id)
    return Legacy(env), params
