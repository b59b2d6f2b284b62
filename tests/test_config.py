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
    assert config.load(kind) == cls()


def test_overrides_and_coercion():
    cfg = config.load("teacher", None, {"seeds": "8", "hidden": "32,16", "double_dqn": "false",
                                        "lr": "1e-3", "total_steps": "10_000"})
    assert (cfg.seeds, cfg.hidden, cfg.double_dqn, cfg.lr, cfg.total_steps) == \
        (8, (32, 16), False, 1e-3, 10_000)


@pytest.mark.parametrize("over,needle", [
    ({"seeds": "0"}, "seeds: must be >= 1"),
    ({"seeds": "abc"}, "seeds: expected int"),
    ({"seeds": "1.5"}, "seeds: expected int"),
    ({"lr": "-1"}, "lr: must be > 0"),
    ({"lr": "nan"}, "finite"),
    ({"hidden": "64,x"}, "hidden: expected comma-separated integers"),
    ({"hidden": "64,0"}, "hidden: must be >= 1"),
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


def test_config_is_frozen_and_roundtrips():
    cfg = config.TeacherConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert config.from_dict("teacher", config.to_dict(cfg)) == cfg


def test_parse_sets():
    assert config.parse_sets(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError):
        config.parse_sets(["novalue"])


def test_readme_config_reference_lists_every_key():
    """The README's config reference (scripts/config_reference.py) is kept in sync."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for cls in config.CONFIGS.values():
        for f in dataclasses.fields(cls):
            default = f.default
            if isinstance(default, tuple):
                default = ",".join(map(str, default))
            assert f"| `{f.name}` | `{default}` |" in readme, f.name
