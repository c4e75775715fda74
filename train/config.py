"""The trainer's structured config (OmegaConf), its `key=value` overrides and its checks.

Groups follow the reference example's hydra config (docs/semantics.md §6.1): `env`, `collector`, `model`, `optim`,
`loss`, `logger`, plus `eval`, `checkpoint`, `seed` and `num_seeds`. Defaults are sized for a 2-core
CPU (a default run finishes in a few minutes, compile included); the reference's GPU sizes are reached
by overrides alone, e.g. (docs/semantics.md §6.1, 5000 envs, 100k frames per batch, 1000 iterations)::

    python -m train.ppo env.num_envs=5000 collector.frames_per_batch=100000 \\
        collector.total_frames=100000000 loss.mini_batch_size=33333 eval.test_interval=10000000

Command line: `python -m train.ppo [CONFIG.yaml ...] [group.key=value ...]`. YAML files are merged in
order, then the dotlist. Unknown keys and values of the wrong type raise `ConfigError` (a ValueError)
that names the key and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from train.torchtrade_keys import torchtrade_alias

FEATURE_MODES = ("zscore_train", "zscore_split", "none")
LOGGER_BACKENDS = ("wandb", "tensorboard", "csv", "none")
LOGGER_MODES = ("offline", "online", "disabled")
CRITIC_LOSSES = ("l2", "l1", "smooth_l1")
CPU_COLLECTIVES = ("gloo", "mpi")


class ConfigError(ValueError):
    """A bad key or value in the trainer config; the message names the key and how to fix it."""


@dataclass
class EnvGroup:
    """Every `trading_jax.EnvConfig` field (same names and meaning), plus data and vectorisation."""

    data_path: str | None = None  # CSV / CSV.GZ / Parquet of 1-minute (or any) OHLCV; None: bundled BTC sample
    test_split_start: str | None = "2024-05-28"  # rows at or after it are the held-out test split; null: none
    num_envs: int = 64
    # z-score of each timeframe's OHLCV: "zscore_train" (statistics of the training span only, frozen and
    # reused for the test split and `train.evaluate`), "zscore_split" (the reference: each split fits its
    # own statistics over the whole split, Q8), or "none" (raw prices, the env's default).
    features: str = "zscore_train"
    time_frames: list[str] = field(default_factory=lambda: ["1Hour"])
    window_sizes: list[int] = field(default_factory=lambda: [24])
    execute_on: str = "1Hour"
    initial_cash: Any = 1000  # a number, or [lo, hi] integers drawn per reset
    random_start: bool = True
    # None: frames_per_batch // num_envs, as the reference (so an episode lasts that minus one step);
    # 0: no limit (an episode runs to the end of the data); N: N bars.
    max_traj_length: int | None = None
    bankrupt_threshold: float = 0.1
    action_levels: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0])
    leverage: float = 3.0
    # The reference ships 0.004, which fails validation at leverage 3, mmr 0.004 (Q1): the largest fee
    # that fits is 0.003009. We use 0.001.
    transaction_fee: float = 0.001
    slippage: float = 0.01
    maintenance_margin_rate: float = 0.004
    margin_mode: str = "isolated"
    include_base_features: bool = False
    sltp: bool = False
    stoploss_levels: list[float] = field(default_factory=lambda: [-0.025, -0.05, -0.1])
    takeprofit_levels: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    include_hold_action: bool = True
    include_close_action: bool = False
    lock_position_until_sltp: bool = False
    trade_mode: str = "fractional"
    position_fraction: float = 1.0
    quantity_per_trade: float = 0.001


@dataclass
class CollectorGroup:
    frames_per_batch: int = 1280  # = num_envs * steps per iteration (must divide by num_envs)
    total_frames: int = 1_280_000  # total_frames // frames_per_batch iterations (1000, as the reference)
    # Stop this process once the iteration counter reaches this value (a checkpoint is written); the
    # schedules still use total_frames, so `checkpoint.resume` continues the same run exactly.
    stop_at_iteration: int | None = None


@dataclass
class ModelGroup:
    network_type: str = "batchnorm_mlp"
    hidden_size: int = 128
    num_layers: int = 4
    dropout: float = 0.1
    # Q10: the reference collects (and computes GAE values) with the network in training mode: BatchNorm
    # uses the statistics of the current batch of env lanes and updates its running stats, dropout is on.
    # false: collect and compute values in eval mode (running stats, no dropout).
    collect_train_mode: bool = True


@dataclass
class OptimGroup:
    lr: float = 2.5e-4
    eps: float = 1e-6
    weight_decay: float = 0.0  # torch.optim.Adam style (L2 added to the clipped gradient)
    max_grad_norm: float = 0.5
    anneal_lr: bool = True  # linear to 0 over all updates (really happens here, Q4)


@dataclass
class LossGroup:
    gamma: float = 0.9
    gae_lambda: float = 0.95  # 0 reproduces the reference's effective one-step TD advantage (Q3)
    clip_epsilon: float = 0.1
    anneal_clip_epsilon: bool = True  # linear to 0 over all updates (Q4)
    critic_coeff: float = 1.0
    entropy_coeff: float = 0.01
    loss_critic_type: str = "l2"
    normalize_advantage: bool = True  # per minibatch: (A - mean) / max(std_unbiased, 1e-6)
    recompute_advantage: bool = True  # recompute values + GAE before every epoch, as the reference does
    ppo_epochs: int = 3
    mini_batch_size: int = 426  # frames_per_batch // mini_batch_size minibatches per epoch (drop_last)
    # BatchNorm pass structure (docs/semantics.md §6.4). gae_passes=2: V(s) and V(s') in two forwards, obs first, each
    # with its own batch statistics (torchrl's GAE with deactivate_vmap; same cost as 1); 1: one forward over both.
    # trunk_passes=2: the loss runs the shared trunk once for the actor and once for the critic, each with its
    # own dropout mask and running-stat update (ClipPPOLoss); 1 (default): once, 1.4-1.5x faster iterations at
    # 64 envs x 100 steps on CPU; the same expected gradient, the running statistics drift differently.
    gae_passes: int = 2
    trunk_passes: int = 1


@dataclass
class LoggerGroup:
    # One of LOGGER_BACKENDS or a list of them (logger.backend=[tensorboard,csv]); metrics.jsonl is always
    # written in the run directory, "none" adds nothing to it (train/loggers.py).
    backend: Any = "wandb"
    mode: str = "offline"  # wandb mode: offline (default), online, disabled
    project: str = "trading_jax"
    group: str | None = None
    exp_name: str = "ppo"
    run_dir: str | None = None  # None: <root_dir>/<exp_name>-<timestamp>
    root_dir: str = "runs"
    progress: bool = True  # tqdm bar with frames/s and reward
    # Every this many iterations, time a separate collect-only jitted call on the current state (its result
    # is discarded) to report time/SPS-collecting; 0 disables it.
    timing_interval: int = 10


@dataclass
class EvalGroup:
    enabled: bool = True
    test_interval: int = 128_000  # frames (every 100 iterations, as the reference); also after the first and last
    # Deterministic episode on the training split from its first bar, at most this many steps (the
    # reference's 60*24*30, which is the whole hourly training set: Q9).
    train_max_steps: int = 43_200
    plots: bool = True  # history PNGs in <run_dir>/plots
    # The unit of the plots' price and value axes; null: "USDT" for the bundled BTC/USDT sample, none else.
    quote_currency: str | None = None


@dataclass
class CheckpointGroup:
    enabled: bool = True  # at each evaluation and at the end, in <run_dir>/checkpoints
    resume: str | None = None  # a run directory (or checkpoint file) to continue exactly
    keep: int = 3  # how many checkpoints to keep (oldest deleted first)


@dataclass
class ParallelGroup:
    """Data parallelism over a device mesh and multi-process runs (train/parallel.py, train/SCALING.md)."""

    # Local devices of each process that the run uses: "all" or N (the first N). The mesh ("data" axis)
    # spans these devices of every process. One device in total: the single-device program, unchanged.
    devices: Any = "all"
    # Call jax.distributed.initialize before anything else (multi-process / multi-host). Unset values
    # below come from $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID, then JAX's cluster
    # auto-detection (SLURM, Open MPI, Cloud TPU, Kubernetes).
    distributed: bool = False
    coordinator_address: str | None = None  # "host:port" of process 0
    num_processes: int | None = None
    process_id: int | None = None
    # XLA:CPU cross-process collectives (only used when the devices are CPUs): "gloo" or "mpi".
    cpu_collectives: str = "gloo"


@dataclass
class TrainConfig:
    env: EnvGroup = field(default_factory=EnvGroup)
    collector: CollectorGroup = field(default_factory=CollectorGroup)
    model: ModelGroup = field(default_factory=ModelGroup)
    optim: OptimGroup = field(default_factory=OptimGroup)
    loss: LossGroup = field(default_factory=LossGroup)
    logger: LoggerGroup = field(default_factory=LoggerGroup)
    eval: EvalGroup = field(default_factory=EvalGroup)
    checkpoint: CheckpointGroup = field(default_factory=CheckpointGroup)
    parallel: ParallelGroup = field(default_factory=ParallelGroup)
    seed: int = 0
    # K independent agents trained in one jitted program (vmap over seeds); with several devices the seeds
    # are sharded over them when K is a multiple of the device count (else the envs are).
    num_seeds: int = 1
    # JAX's persistent compilation cache (train/compile_cache.py): "auto" (the user's cache folder), "off", or a
    # folder; the TRADING_JAX_COMPILATION_CACHE environment variable overrides it.
    compilation_cache: str = "auto"


# --------------------------------------------------------------------------------------- key listing
def _type_name(tp) -> str:
    return str(tp).replace("typing.", "") if not isinstance(tp, type) else tp.__name__


def valid_keys(node=TrainConfig, prefix: str = "") -> dict[str, tuple[str, Any]]:
    """Flat `{"group.key": (type name, default)}` of every valid config key."""
    out = {}
    inst = node()
    for f in dataclasses.fields(node):
        name = prefix + f.name
        value = getattr(inst, f.name)
        if dataclasses.is_dataclass(value):
            out.update(valid_keys(type(value), name + "."))
        else:
            out[name] = (_type_name(f.type), value)
    return out


def describe_keys(keys: list[str] | None = None) -> str:
    table = valid_keys()
    keys = list(table) if keys is None else keys
    width = max(len(k) for k in keys)
    return "\n".join(f"  {k:<{width}}  {table[k][0]:<18} default {table[k][1]!r}" for k in keys)


def _explain(err: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or ""
    table = valid_keys()
    first = str(err).splitlines()[0]
    if key in table:  # a known key with a bad value
        tp, default = table[key]
        return ConfigError(f"{source}: {key}: {first} (expected {tp}, default {default!r})")
    close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    group = key.split(".")[0] + "." if "." in key else ""
    same_group = [k for k in table if group and k.startswith(group)]
    listing = describe_keys(same_group or None)
    return ConfigError(
        f"{source}: unknown config key {key!r}.{hint}\nValid keys"
        f"{' in ' + group[:-1] if same_group else ''}:\n{listing}"
    )


# --------------------------------------------------------------------------------------- loading
def default_config() -> DictConfig:
    cfg = OmegaConf.structured(TrainConfig)
    OmegaConf.set_struct(cfg, True)
    return cfg


def load_config(args: list[str] | tuple[str, ...] = (), base: DictConfig | None = None) -> DictConfig:
    """Defaults (or `base`) ← YAML files (args ending in .yaml/.yml) ← `key=value` overrides, then checked."""
    cfg = default_config() if base is None else base
    dotlist = []
    for arg in args:
        if "=" in arg:
            dotlist.append(arg)
        elif arg.endswith((".yaml", ".yml")):
            if not os.path.isfile(arg):
                raise ConfigError(f"config file {arg!r} does not exist")
            try:
                cfg = OmegaConf.merge(cfg, OmegaConf.load(arg))
            except OmegaConfBaseException as err:
                raise _explain(err, arg) from None
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise ConfigError(f"config file {arg!r} is not valid YAML: {problem}{where}") from None
        else:
            raise ConfigError(
                f"cannot read argument {arg!r}: give overrides as group.key=value (e.g. env.num_envs=128) or a "
                f"YAML file ending in .yaml. Valid keys:\n{describe_keys()}"
            )
    dotlist = [torchtrade_alias(item) for item in dotlist]
    for item in dotlist:
        key = item.split("=", 1)[0].lstrip("+")
        if not key:
            raise ConfigError(f"command line: {item!r} has no key; give overrides as group.key=value (optim.lr=1e-4)")
        if key not in valid_keys():
            raise _explain(_UnknownKey(key), "command line")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise _explain(err, "command line") from None
    _resolve(cfg)
    validate(cfg)
    return cfg


def _resolve(cfg) -> None:
    """Resolve the interpolations given on the command line or in YAML files (`${oc.env:X}`, `${env.num_envs}`)
    now: a bad one is reported before anything runs, and the config a run stores holds plain values. (A config
    read back from a run is never resolved: `train.rundir.stored_config`.)"""
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"{key}: cannot resolve its interpolation: {str(err).splitlines()[0]}") from None


class _UnknownKey(OmegaConfBaseException):
    def __init__(self, key):
        super().__init__(f"Key {key!r} not in config")
        self.full_key = key


# --------------------------------------------------------------------------------------- checks
def _need(cond: bool, msg: str):
    if not cond:
        raise ConfigError(msg)


def num_iterations(cfg) -> int:
    return cfg.collector.total_frames // cfg.collector.frames_per_batch


def steps_per_iteration(cfg) -> int:
    return cfg.collector.frames_per_batch // cfg.env.num_envs


def num_minibatches(cfg) -> int:
    return cfg.collector.frames_per_batch // cfg.loss.mini_batch_size


def validate(cfg) -> None:
    """Cross-field checks the type system cannot do. Raises ConfigError naming the field and a fix."""
    e, c, lo, m = cfg.env, cfg.collector, cfg.loss, cfg.model
    _need(e.num_envs >= 1, f"env.num_envs must be >= 1, got {e.num_envs}")
    _need(
        c.frames_per_batch >= e.num_envs and c.frames_per_batch % e.num_envs == 0,
        f"collector.frames_per_batch={c.frames_per_batch} must be a positive multiple of env.num_envs="
        f"{e.num_envs} (each iteration collects num_envs lanes x frames_per_batch // num_envs steps); e.g. "
        f"collector.frames_per_batch={max(1, c.frames_per_batch // e.num_envs) * e.num_envs}",
    )
    _need(
        c.total_frames >= c.frames_per_batch,
        f"collector.total_frames={c.total_frames} must be >= collector.frames_per_batch={c.frames_per_batch}",
    )
    _need(
        1 <= lo.mini_batch_size <= c.frames_per_batch,
        f"loss.mini_batch_size={lo.mini_batch_size} must be in [1, collector.frames_per_batch="
        f"{c.frames_per_batch}]; e.g. loss.mini_batch_size={max(1, c.frames_per_batch // 3)}",
    )
    _need(lo.ppo_epochs >= 1, f"loss.ppo_epochs must be >= 1, got {lo.ppo_epochs}")
    _need(0 <= lo.gamma <= 1, f"loss.gamma must be in [0, 1], got {lo.gamma}")
    _need(0 <= lo.gae_lambda <= 1, f"loss.gae_lambda must be in [0, 1], got {lo.gae_lambda}")
    _need(lo.clip_epsilon > 0, f"loss.clip_epsilon must be > 0, got {lo.clip_epsilon}")
    _need(lo.loss_critic_type in CRITIC_LOSSES, f"loss.loss_critic_type must be one of {CRITIC_LOSSES}")
    for key in ("gae_passes", "trunk_passes"):
        _need(lo[key] in (1, 2), f"loss.{key} must be 1 or 2, got {lo[key]}; e.g. loss.{key}=2 (the reference's)")
    _need(m.network_type == "batchnorm_mlp", "model.network_type must be 'batchnorm_mlp' (the only one)")
    _need(m.hidden_size >= 1 and m.num_layers >= 0, "model.hidden_size must be >= 1 and model.num_layers >= 0")
    _need(0 <= m.dropout < 1, f"model.dropout must be in [0, 1), got {m.dropout}")
    _need(
        not (m.collect_train_mode and e.num_envs < 2),
        "model.collect_train_mode=true normalises BatchNorm over the env lanes, which needs env.num_envs >= 2; "
        "raise env.num_envs or set model.collect_train_mode=false",
    )
    _need(cfg.optim.lr > 0 and cfg.optim.eps > 0, "optim.lr and optim.eps must be > 0")
    _need(cfg.optim.max_grad_norm > 0, f"optim.max_grad_norm must be > 0, got {cfg.optim.max_grad_norm}")
    _need(e.features in FEATURE_MODES, f"env.features must be one of {FEATURE_MODES}, got {e.features!r}")
    logger_backends(cfg)  # raises on an unknown logger.backend
    _need(cfg.logger.mode in LOGGER_MODES, f"logger.mode must be one of {LOGGER_MODES}")
    _need(cfg.logger.timing_interval >= 0, "logger.timing_interval must be >= 0 (0 disables it)")
    _need(cfg.eval.test_interval >= 1, "eval.test_interval must be >= 1 frame")
    _need(cfg.eval.train_max_steps >= 1, "eval.train_max_steps must be >= 1")
    _need(cfg.checkpoint.keep >= 1, "checkpoint.keep must be >= 1")
    _need(cfg.num_seeds >= 1, f"num_seeds must be >= 1, got {cfg.num_seeds}")
    _need(e.max_traj_length is None or e.max_traj_length >= 0, "env.max_traj_length must be None, 0 or >= 1")
    if c.stop_at_iteration is not None:
        _need(c.stop_at_iteration >= 1, "collector.stop_at_iteration must be >= 1 (or null)")
    requested_devices(cfg)  # raises on a bad parallel.devices
    p = cfg.parallel
    _need(p.cpu_collectives in CPU_COLLECTIVES, f"parallel.cpu_collectives must be one of {CPU_COLLECTIVES}")
    _need(p.num_processes is None or p.num_processes >= 1, "parallel.num_processes must be >= 1 (or null)")
    if p.process_id is not None:
        _need(p.process_id >= 0, "parallel.process_id must be >= 0 (or null)")
        _need(
            p.num_processes is None or p.process_id < p.num_processes,
            f"parallel.process_id={p.process_id} must be < parallel.num_processes={p.num_processes}",
        )


def logger_backends(cfg) -> tuple[str, ...]:
    """`logger.backend` as a tuple of backend names: one name, a list, or comma-separated names; `none` is ()."""
    value = cfg.logger.backend
    items = value.split(",") if isinstance(value, str) else list(value) if value is not None else []
    names = tuple(dict.fromkeys(str(v).strip().lower() for v in items if str(v).strip()))
    valid = ", ".join(LOGGER_BACKENDS)
    for name in names:
        _need(
            name in LOGGER_BACKENDS,
            f"logger.backend: unknown backend {name!r}; valid backends are {valid}, or a list of them, "
            "e.g. logger.backend=[tensorboard,csv]",
        )
    _need(bool(names), f"logger.backend is empty; give one of {valid} (none: metrics.jsonl only)")
    _need(
        names == ("none",) or "none" not in names,
        f"logger.backend={list(names)}: 'none' cannot be combined with other backends; drop it",
    )
    return () if names == ("none",) else names


def requested_devices(cfg) -> int | None:
    """`parallel.devices` as a count of local devices per process; None means "all"."""
    value = cfg.parallel.devices
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return None
        if value.strip().isdigit():
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"parallel.devices must be 'all' or a positive number of local devices per process, got {value!r}; "
            "e.g. parallel.devices=all or parallel.devices=2"
        )
    return int(value)


def env_config_kwargs(cfg) -> dict:
    """The `trading_jax.EnvConfig` keyword arguments of the training env (plain Python values)."""
    e = OmegaConf.to_container(cfg.env, resolve=True)
    for k in ("data_path", "test_split_start", "num_envs", "features"):
        e.pop(k)
    if e["max_traj_length"] is None:
        e["max_traj_length"] = steps_per_iteration(cfg)
    elif e["max_traj_length"] == 0:
        e["max_traj_length"] = None
    for k, v in list(e.items()):
        if isinstance(v, list):
            e[k] = tuple(v)
    return e


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(cfg)


def to_dict(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)

