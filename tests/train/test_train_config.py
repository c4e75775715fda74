"""Trainer config: defaults, overrides, YAML, and clear errors."""

import dataclasses

import pytest

import trading_jax
from train.config import ConfigError, EnvGroup, env_config_kwargs, load_config, num_minibatches, valid_keys


def test_defaults_are_valid_and_build_a_valid_env_config():
    cfg = load_config([])
    assert cfg.env.leverage == 3 and list(cfg.env.action_levels) == [-1, 0, 1]
    assert cfg.env.transaction_fee == 0.001 and cfg.env.slippage == 0.01
    kwargs = env_config_kwargs(cfg)
    assert kwargs["max_traj_length"] == cfg.collector.frames_per_batch // cfg.env.num_envs
    trading_jax.EnvConfig(**kwargs)  # passes the fee-fits-maintenance validation
    assert num_minibatches(cfg) == 3


def test_reference_fee_fails_validation_q1():
    cfg = load_config(["env.transaction_fee=0.004"])
    with pytest.raises(ValueError, match="transaction_fee"):
        trading_jax.EnvConfig(**env_config_kwargs(cfg))


def test_env_group_has_every_envconfig_field():
    ours = {f.name for f in dataclasses.fields(EnvGroup)}
    theirs = {f.name for f in dataclasses.fields(trading_jax.EnvConfig)}
    assert theirs <= ours, theirs - ours


def test_overrides_like_the_reference():
    cfg = load_config(
        [
            "env.num_envs=128",
            "model.hidden_size=256",
            "optim.lr=1e-4",
            "collector.frames_per_batch=2560",
            "env.initial_cash=[900,1100]",
            "env.max_traj_length=0",
            "seed=3",
        ]
    )
    assert cfg.env.num_envs == 128 and cfg.model.hidden_size == 256 and cfg.optim.lr == 1e-4 and cfg.seed == 3
    kwargs = env_config_kwargs(cfg)
    assert kwargs["initial_cash"] == (900, 1100) and kwargs["max_traj_length"] is None
    assert trading_jax.EnvConfig(**kwargs).cash_range == (900.0, 1100.0)


def test_yaml_file_then_dotlist(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("env:\n  num_envs: 32\n  leverage: 2\nloss:\n  gamma: 0.99\n")
    cfg = load_config([str(path), "loss.gamma=0.5"])
    assert cfg.env.num_envs == 32 and cfg.env.leverage == 2 and cfg.loss.gamma == 0.5


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        load_config(["env.num_env=8"])
    msg = str(info.value)
    assert "env.num_env" in msg and "Did you mean env.num_envs" in msg
    assert "env.leverage" in msg and "env.test_split_start" in msg  # the group's valid keys are listed


def test_unknown_group_lists_all_keys():
    with pytest.raises(ConfigError) as info:
        load_config(["trainer.lr=1"])
    assert "optim.lr" in str(info.value) and "loss.clip_epsilon" in str(info.value)


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        load_config([str(path)])


@pytest.mark.parametrize(
    "arg,needle",
    [("env.num_envs=abc", "env.num_envs"), ("seed=1.5", "seed"), ("loss.ppo_epochs=two", "loss.ppo_epochs")],
)
def test_bad_type_names_the_key_and_type(arg, needle):
    with pytest.raises(ConfigError) as info:
        load_config([arg])
    assert needle in str(info.value) and "expected" in str(info.value)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["collector.frames_per_batch=1000"], "multiple of env.num_envs"),
        (["loss.mini_batch_size=100000"], "loss.mini_batch_size"),
        (["env.features=pca"], "env.features"),
        (["logger.backend=tensorflow"], "logger.backend"),
        (["env.num_envs=1"], "collect_train_mode"),
        (["not_a_kv_pair"], "group.key=value"),
    ],
)
def test_cross_field_errors(args, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(args)


def test_valid_keys_cover_all_groups():
    keys = valid_keys()
    for k in (
        "env.num_envs",
        "env.data_path",
        "env.test_split_start",
        "collector.frames_per_batch",
        "collector.total_frames",
        "model.hidden_size",
        "model.num_layers",
        "model.dropout",
        "optim.lr",
        "optim.eps",
        "optim.weight_decay",
        "optim.max_grad_norm",
        "optim.anneal_lr",
        "loss.gamma",
        "loss.gae_lambda",
        "loss.clip_epsilon",
        "loss.anneal_clip_epsilon",
        "loss.critic_coeff",
        "loss.entropy_coeff",
        "loss.ppo_epochs",
        "loss.mini_batch_size",
        "logger.mode",
        "eval.test_interval",
        "checkpoint.resume",
        "seed",
        "num_seeds",
    ):
        assert k in keys
