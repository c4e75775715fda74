"""The walk-forward command's config: the trainer's keys (`train.config.TrainConfig`) plus a `walkforward` group.

`train.config` is reused as it is: its `load_config` parses and checks every trainer key; the `walkforward.*`
keys are a second structured OmegaConf node (`WalkForwardGroup`), parsed and checked here. Both come from the
same command line and YAML files (a YAML file may hold a `walkforward:` group next to the trainer's groups).
`sweep.<key>=[v1,v2,...]` keys (or a YAML `sweep:` group) give a hyper-parameter grid (`sweep.py`); a sweep needs
`walkforward.val_days > 0` (the selection span).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from train.config import ConfigError, default_config, load_config, to_dict
from train.walkforward import sweep as sweeps

METRICS = ("log_return", "sharpe")
GROUP = "walkforward"


@dataclass
class WalkForwardGroup:
    """Window spans (days may be fractional), baselines and statistics of `python -m train.walkforward`."""

    train_days: float = 28.0  # length of each train span
    test_days: float = 7.0  # length of each test span, which starts where its train span ends
    step_days: float | None = None  # how far each window moves on; null: test_days (test spans tile the data)
    num_windows: int | None = 4  # the first N windows from `start`; null: as many as fit before `end`
    start: str | None = None  # first train span's start; null: the first bar of the data
    end: str | None = None  # no span reaches past it (exclusive); null: the end of the data
    anchored: bool = False  # true: every train span starts at `start` (expanding); false: rolling, fixed length
    # The last val_days of each train span: the agent does not train on it, it is evaluated there (the
    # selection span of sweeps). 0: no validation tail, the agent trains on the whole train span.
    val_days: float = 0.0
    momentum_bars: int = 24  # the momentum baseline's lookback N: sign of the last N-bar return
    random_seeds: int = 8  # episodes of the uniform random baseline per window
    bootstrap_samples: int = 10_000  # replicates of the hierarchical bootstrap
    metric: str = "log_return"  # the metric the agent-minus-baseline statistics use: log_return or sharpe
    plots: bool = True  # equity curves and the forest plot in <run_dir>/plots


# The trainer defaults that differ under walk-forward: a CPU run of a few minutes on the bundled BTC data
# (4 windows x 4 seeds), no periodic trainer evaluation (walk-forward evaluates each window's test span
# itself), metrics.jsonl only, no collect-only timing program (one compile less), and the windows' own spans
# instead of env.test_split_start.
TRAIN_DEFAULTS = (
    "num_seeds=4",
    "collector.total_frames=64000",
    "eval.enabled=false",
    "logger.backend=none",
    "logger.exp_name=walkforward",
    "logger.timing_interval=0",
)


@dataclass(frozen=True)
class Settings:
    train: DictConfig  # a checked `TrainConfig` node: what each window's trainer runs with
    wf: DictConfig  # a checked `WalkForwardGroup` node
    sweep: dict = field(default_factory=dict)  # {config key: [values]}, e.g. {"optim.lr": [1e-4, 3e-4]}

    def to_dict(self) -> dict:
        out = dict(to_dict(self.train), **{GROUP: OmegaConf.to_container(self.wf, resolve=True)})
        return dict(out, sweep=dict(self.sweep)) if self.sweep else out

    @property
    def grid(self) -> list[dict[str, float]]:
        """The sweep's points (`[{}]` without a sweep)."""
        return sweeps.grid(self.sweep)

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(OmegaConf.create(self.to_dict()))


def walkforward_keys() -> dict[str, tuple[str, object]]:
    fields = dataclasses.fields(WalkForwardGroup)
    return {f"{GROUP}.{f.name}": (str(f.type), f.default) for f in fields}


def describe_walkforward_keys() -> str:
    table = walkforward_keys()
    width = max(len(k) for k in table)
    return "\n".join(f"  {k:<{width}}  {tp:<18} default {d!r}" for k, (tp, d) in table.items())


def train_base() -> DictConfig:
    """The trainer config with the walk-forward defaults (`TRAIN_DEFAULTS`)."""
    return load_config(list(TRAIN_DEFAULTS), base=default_config())


def _merge_walkforward(wf: DictConfig, items: list[str] | dict, source: str) -> DictConfig:
    table = walkforward_keys()
    names = [i.split("=", 1)[0].lstrip("+") for i in items] if isinstance(items, list) else list(items)
    for name in names:
        key = name if name.startswith(GROUP + ".") else f"{GROUP}.{name}"
        if key not in table:
            close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            listing = describe_walkforward_keys()
            raise ConfigError(f"{source}: unknown config key {key!r}.{hint}\nValid keys:\n{listing}")
    try:
        if isinstance(items, list):
            return OmegaConf.merge(wf, OmegaConf.from_dotlist([i.split(".", 1)[1] for i in items]))
        return OmegaConf.merge(wf, OmegaConf.create(items))
    except OmegaConfBaseException as err:
        key = f"{GROUP}.{getattr(err, 'full_key', '') or ''}"
        tp, default = table.get(key, ("?", None))
        raise ConfigError(f"{source}: {key}: {str(err).splitlines()[0]} (expected {tp}, default {default!r})") from None


def _split_yaml(path: str, wf: DictConfig, sweep: dict) -> tuple[dict, DictConfig]:
    """A YAML file's trainer groups (as a dict), its `walkforward` group merged into `wf`, its `sweep` group
    (or `sweep.<key>` entries) into `sweep`."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of groups")
    swept = {str(k).removeprefix(sweeps.PREFIX): data.pop(k) for k in list(data) if str(k).startswith(sweeps.PREFIX)}
    try:
        sweep.update(sweeps.flatten(dict(data.pop("sweep", None) or {}, **swept)))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    group = data.pop(GROUP, None) or {}
    if not isinstance(group, dict):
        raise ConfigError(f"{path}: the {GROUP} group must be a mapping of walkforward keys")
    return data, _merge_walkforward(wf, group, path)


def load_settings(args: list[str] | tuple[str, ...] = ()) -> Settings:
    """Walk-forward defaults ← YAML files ← `key=value` overrides (trainer keys and `walkforward.*`), checked."""
    train = train_base()
    wf = OmegaConf.structured(WalkForwardGroup)
    OmegaConf.set_struct(wf, True)
    train_items, wf_items, sweep = [], [], {}
    for arg in args:
        key = arg.split("=", 1)[0].lstrip("+") if "=" in arg else None
        if key is None and arg.endswith((".yaml", ".yml")):
            data, wf = _split_yaml(arg, wf, sweep)
            try:
                train = OmegaConf.merge(train, OmegaConf.create(data))
            except OmegaConfBaseException as err:
                raise ConfigError(f"{arg}: {str(err).splitlines()[0]}") from None
        elif key is not None and key.startswith(GROUP + "."):
            wf_items.append(arg)
        elif key is not None and key.startswith(sweeps.PREFIX):
            name, values = sweeps.parse_item(arg)
            sweep[name] = values
        else:
            train_items.append(arg)
    wf = _merge_walkforward(wf, wf_items, "command line")
    train = load_config(train_items, base=train)
    validate(wf, train)
    for key, values in sweep.items():  # each value passes the trainer's own checks (e.g. loss.gamma in [0, 1])
        for value in values:
            try:
                load_config([f"{key}={value!r}"], base=train)
            except ConfigError as err:
                raise ConfigError(f"{sweeps.PREFIX}{key}={values}: {str(err).splitlines()[0]}") from None
    _need(
        not sweep or wf.val_days > 0,
        f"{', '.join(sweeps.PREFIX + k for k in sweep)}: a sweep selects on each window's validation tail; set "
        "walkforward.val_days > 0, e.g. walkforward.val_days=3 (the agents then train on the rest of the train span)",
    )
    return Settings(train=train, wf=wf, sweep=sweep)


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _positive(value, name: str, hint: str) -> None:
    _need(value is not None and math.isfinite(value) and value > 0, f"{GROUP}.{name} must be > 0, got {value}; {hint}")


def validate(wf: DictConfig, train: DictConfig) -> None:
    """Cross-field checks of the walkforward group and of what it needs from the trainer config."""
    _positive(wf.train_days, "train_days", "e.g. walkforward.train_days=28")
    _positive(wf.test_days, "test_days", "e.g. walkforward.test_days=7")
    if wf.step_days is not None:
        _positive(wf.step_days, "step_days", "or null to step by test_days")
    windows = wf.num_windows
    _need(windows is None or windows >= 1, f"{GROUP}.num_windows must be >= 1 or null, got {windows}")
    _need(
        0 <= wf.val_days < wf.train_days,
        f"{GROUP}.val_days={wf.val_days} must be in [0, train_days={wf.train_days}): the validation tail lies "
        "inside the train span and the agent trains on the rest",
    )
    _need(wf.momentum_bars >= 1, f"{GROUP}.momentum_bars must be >= 1, got {wf.momentum_bars}")
    _need(wf.random_seeds >= 1, f"{GROUP}.random_seeds must be >= 1, got {wf.random_seeds}")
    _need(wf.bootstrap_samples >= 100, f"{GROUP}.bootstrap_samples must be >= 100, got {wf.bootstrap_samples}")
    _need(wf.metric in METRICS, f"{GROUP}.metric must be one of {METRICS}, got {wf.metric!r}")
    _need(
        not train.checkpoint.resume,
        "checkpoint.resume: a walk-forward run cannot be resumed; start it again in a new logger.run_dir",
    )
    _need(not train.parallel.distributed, "parallel.distributed=true: walk-forward runs in one process for now")
    e = train.env
    _need(
        e.features != "zscore_split",
        "env.features=zscore_split fits each split's own statistics, the test span's included (look-ahead); "
        "walk-forward fits features on each window's train span: use env.features=zscore_train (or none)",
    )
    _need(not e.sltp, "env.sltp=true: the walk-forward baselines need fractional action levels; set env.sltp=false")
    levels = [float(a) for a in e.action_levels]
    _need(
        0.0 in levels and max(levels) > 0,
        f"env.action_levels={levels}: the baselines need a flat level 0 and a long level > 0, e.g. [-1, 0, 1]",
    )
