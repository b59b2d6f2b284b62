"""Configs: files match the defaults, validation gives one clear error."""

import dataclasses

import pytest

from distillq import config
from distillq.errors import ConfigError


@pytest.mark.parametrize("kind", ["teacher", "distill"])
def test_config_files_equal_defaults_and_are_complete(kind):
    cls = config.CONFIGS[kind]
    path = config.default_path(kind)
    assert path is not None, "configs/<kind>.toml is missing"
    values = config.read_toml(path)
    assert set(values) == {f.name for f in dataclasses.fields(cls)}
    assert config.build(cls, values) == cls()
    # the default env's own file (configs/envs/CartPole-v1.toml) layers over the defaults
    env_layer = config.read_env_file("CartPole-v1").get(kind, {})
    assert config.load(kind, env="CartPole-v1") == config.build(cls, {**values, **env_layer})
    if kind == "distill":   # a distill config names no env: without one, no env layer
        assert config.load(kind) == cls()
    assert config.load("teacher").stop_return == 500.0 and cls().__class__ is cls


def test_overrides_and_coercion():
    cfg = config.load("teacher", None, {"seeds": "8", "network": "32,16", "double_dqn": "false",
                                        "lr": "1e-3", "total_steps": "10_000"})
    assert (cfg.seeds, cfg.network, cfg.double_dqn, cfg.lr, cfg.total_steps) == \
        (8, "32,16", False, 1e-3, 10_000)


def test_old_hidden_key_still_reads(tmp_path):
    """Configs and runs written before network types existed say hidden = [W, W]."""
    old = tmp_path / "old.toml"
    old.write_text("hidden = [32, 16]\n")
    assert config.load("teacher", old).network == "32,16"
    assert config.load("distill", None, {"hidden": "8"}).network == "8"
    assert config.from_dict("teacher", {"hidden": [4]}).network == "4"


@pytest.mark.parametrize("over,needle", [
    ({"seeds": "0"}, "seeds: must be >= 1"),
    ({"seeds": "abc"}, "seeds: expected int"),
    ({"seeds": "1.5"}, "seeds: expected int"),
    ({"lr": "-1"}, "lr: must be > 0"),
    ({"lr": "nan"}, "finite"),
    ({"network": "64,x"}, "network: expected comma-separated integers"),
    ({"network": "64,0"}, "network: hidden sizes must be >= 1"),
    ({"network": "cnn:8,x"}, "network: expected comma-separated integers"),
    ({"network": "mlp:"}, "network: mlp needs hidden sizes"),
    ({"activation": "gelu"}, "activation: must be one of"),
    ({"batch_size": "100000"}, "batch_size"),
    ({"nope": "1"}, "unknown config key 'nope'"),
])
def test_bad_values_are_one_line_config_errors(over, needle):
    with pytest.raises(ConfigError) as e:
        config.load("teacher", None, over)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_malformed_and_unknown_key_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 3\n")
    with pytest.raises(ConfigError, match="malformed config file"):
        config.load("teacher", bad)
    unk = tmp_path / "unk.toml"
    unk.write_text("[dqn]\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        config.load("teacher", unk)
    with pytest.raises(ConfigError, match="not found"):
        config.load("teacher", tmp_path / "missing.toml")


def test_a_typo_in_set_is_blamed_on_set_not_on_a_file(tmp_path):
    """Every file layer is valid on its own: an unknown key in the overrides came from --set
    (it was blamed on the env's file, the last layer read)."""
    for env, kind in (("CartPole-v1", "teacher"), ("Acrobot-v1", "distill")):
        with pytest.raises(ConfigError) as e:
            config.load(kind, None, {"gama": "0.9"}, env=env)
        assert str(e.value).startswith("unknown config key 'gama' in --set")
        assert ".toml" not in str(e.value)
    unk = tmp_path / "unk.toml"
    unk.write_text("gama = 0.9\n")
    with pytest.raises(ConfigError, match=f"unknown config key 'gama' in {unk}"):
        config.load("teacher", unk, {"lr": "0.1"})


def test_config_is_frozen_and_roundtrips():
    cfg = config.TeacherConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert config.from_dict("teacher", config.to_dict(cfg)) == cfg


def test_parse_sets():
    assert config.parse_sets(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError):
        config.parse_sets(["novalue"])


def test_readme_config_reference_is_current():
    """The README's config reference is scripts/config_reference.py's output, verbatim."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("config_reference",
                                                  root / "scripts" / "config_reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    readme = (root / "README.md").read_text()
    assert f"{ref.START}\n{ref.reference()}{ref.END}" in readme, \
        "run: python scripts/config_reference.py --write"
    for cls in config.CONFIGS.values():
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in readme, f.name


def test_env_defaults_layer_between_the_defaults_and_the_user(tmp_path, monkeypatch):
    envs = tmp_path / "envs"
    envs.mkdir()
    (envs / "Catch-bsuite.toml").write_text(
        "[env]\ntarget = -100.0\n[teacher]\nlr = 0.5\nnum_envs = 8\nstop_return = -90.0\n"
        "[distill]\nnetwork = 'linear'\n")
    monkeypatch.setattr(config, "ENV_CONFIG_DIR", envs)
    t = config.load("teacher", None, {"env": "Catch-bsuite"})
    assert (t.lr, t.num_envs, t.stop_return) == (0.5, 8, -90.0)       # the env's layer
    assert config.env_target("Catch-bsuite") == -100.0
    user = tmp_path / "mine.toml"
    user.write_text('env = "Catch-bsuite"\nlr = 0.1\n')
    t = config.load("teacher", user, {"num_envs": "2"})
    assert (t.lr, t.num_envs, t.stop_return) == (0.1, 2, -90.0)       # user file, then --set
    assert config.load("distill", None, {}, env="Catch-bsuite").network == "linear"
    assert config.load("distill", None, {}).network == "64,32"        # no env: no layer
    assert config.load("teacher", None, {"env": "CartPole-v1"}).lr == config.TeacherConfig().lr
    (envs / "DeepSea-bsuite.toml").write_text("[teacher]\nlr = -1\n")
    with pytest.raises(ConfigError, match="DeepSea-bsuite.toml"):
        config.load("teacher", None, {"env": "DeepSea-bsuite"})
    (envs / "FourRooms-misc.toml").write_text("[teachers]\nlr = 1\n")
    with pytest.raises(ConfigError, match="unknown table"):
        config.load("teacher", None, {"env": "FourRooms-misc"})


def test_every_env_file_loads_for_both_kinds():
    files = sorted(config.ENV_CONFIG_DIR.glob("*.toml"))
    assert files, "configs/envs/ is empty"
    for f in files:
        env = f.stem
        assert "target" in config.read_env_file(env).get("env", {}), env
        t = config.load("teacher", None, {"env": env})
        assert t.env == env, env
        if config.env_target(env) is not None:      # early stop at or above the target
            assert t.stop_return is not None and t.stop_return >= config.env_target(env), env
        config.load("distill", None, {}, env=env)


def test_stop_return_none_round_trips():
    cfg = config.build(config.TeacherConfig, {"stop_return": "none"})
    assert cfg.stop_return is None
    assert config.from_dict("teacher", config.to_dict(cfg)).stop_return is None
    assert 'stop_return = "none"' in config.to_toml(cfg)
    assert config.build(config.TeacherConfig, {"stop_return": "-75.5"}).stop_return == -75.5


def test_budget_long_takes_the_env_long_table_over_its_defaults(tmp_path, monkeypatch):
    """--budget long: no early stop, then [teacher.long] over the env's [teacher] and
    [teacher.<algo>] tables; the user's file and --set still win; target is the default."""
    envs = tmp_path / "envs"
    envs.mkdir()
    (envs / "Catch-bsuite.toml").write_text(
        "[env]\ntarget = -100.0\n[teacher]\nstop_return = -90.0\ntotal_steps = 5000\n"
        "[teacher.dqn]\nlr = 0.5\n[teacher.long]\ntotal_steps = 9000\n")
    (envs / "DeepSea-bsuite.toml").write_text("[env]\ntarget = 1.0\n[teacher]\nstop_return = 1.0\n")
    monkeypatch.setattr(config, "ENV_CONFIG_DIR", envs)
    t = config.load("teacher", None, {"env": "Catch-bsuite"})
    assert (t.budget, t.stop_return, t.total_steps, t.lr) == ("target", -90.0, 5000, 0.5)
    t = config.load("teacher", None, {"env": "Catch-bsuite", "budget": "long"})
    assert (t.budget, t.stop_return, t.total_steps, t.lr) == ("long", None, 9000, 0.5)
    t = config.load("teacher", None, {"env": "Catch-bsuite", "budget": "long",
                                      "stop_return": "-50"})
    assert t.stop_return == -50.0
    user = tmp_path / "mine.toml"
    user.write_text('budget = "long"\ntotal_steps = 7000\n')
    t = config.load("teacher", user, {"env": "Catch-bsuite"})
    assert (t.stop_return, t.total_steps) == (None, 7000)
    # an env file without [teacher.long]: long still means no early stop
    assert config.load("teacher", None, {"env": "DeepSea-bsuite", "budget": "long"}) \
        .stop_return is None
    with pytest.raises(ConfigError, match="budget: must be one of target, long"):
        config.load("teacher", None, {"env": "Catch-bsuite", "budget": "huge"})
    base = tmp_path / "teacher.toml"      # the defaults file picks it too, like algo
    base.write_text('budget = "long"\n')
    monkeypatch.setattr(config, "default_path", lambda kind: base)
    assert config.load("teacher", None, {"env": "Catch-bsuite"}).total_steps == 9000


def test_every_minatar_env_has_a_long_budget_without_an_early_stop():
    for f in sorted(config.ENV_CONFIG_DIR.glob("*-MinAtar.toml")):
        assert "long" in config.read_env_file(f.stem)["teacher"], f.stem
        t = config.load("teacher", None, {"env": f.stem, "budget": "long"})
        assert t.stop_return is None and t.algo == "pqn", f.stem
