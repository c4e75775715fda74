"""Deterministic evaluation of a policy (docs/semantics.md §6.5) and the `python -m train.evaluate` entry point.

The policy is the argmax of the logits with the network in eval mode (BatchNorm running statistics, no
dropout). One episode starts at the first bar of a span (`random_start=False`) and runs to its end (or to
bankruptcy). Reported per episode (prefix `eval/` for the test split, `eval/train_` for the training
window): `reward` (sum of step rewards = ln(PV_end / PV_0) unless a -10 bankruptcy reward occurred, as the
reference's eval/reward), `final_pv`, `log_return`, `bh_log_return` and `bh_final_pv` (the reference's
buy-and-hold at the env leverage, no fees, over the same bars), `sharpe` (annualised, 365-day year),
`sortino`, `max_drawdown`, `num_trades`, `time_in_market`, `steps`.

    python -m train.evaluate RUN_DIR [data=PATH] [seed_index=K] [out=DIR] [group.key=value ...]

Without `data=`, evaluates the run's test split and training window; with it, one episode over the whole
of PATH (features normalised with the run's frozen training statistics when `env.features=zscore_train`).

An `EpisodeRunner` (`make_episode_runner`) runs the compiled episode of one env bundle for every seed;
`evaluate_policy` turns its episodes into the numbers above; `evaluate_run` does both for a saved run. The
trainer's periodic evaluation is `train.loop.TrainingEvaluator`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table

import trading_jax
from trading_jax.metrics import periods_per_year
from trading_jax.rollout import reset_row
from train import compile_cache
from train.checkpoint import load_checkpoint
from train.config import load_config
from train.data import build_eval_bundle, build_setup, describe_data_change, import_name, load_features
from train.errors import RunWarning, run_cli
from train.networks import apply_eval, make_network
from train.rundir import CUSTOM_FILE, resume_dir, stored_config

EPISODE_KEYS = ("reward", "done", "terminated", "portfolio_value", "position_size", "price", "action_kind", "action")


SPAN_TITLES = {"test": "Test split", "train": "Training window", "data": "Data"}


def eval_key(seed: int, iteration: int):
    """The key of the evaluation after `iteration` (slippage draws): the trainer and the CLI share it."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED), iteration)


def _deterministic_episode(env, network, num_steps: int):
    """Pure `fn(params, batch_stats, env_params, key) -> rows` of one deterministic episode.

    `rows[k]` are `[num_steps + 1]` arrays (row 0 is the reset row), plus `valid [num_steps + 1]` (False
    after the episode ended, e.g. by bankruptcy before the last bar).
    """

    def run(params, batch_stats, env_params, key):
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset(k_reset, env_params)
        first = reset_row(env, state, env_params)
        first = {k: first[k] for k in EPISODE_KEYS}
        first["valid"] = jnp.ones((), bool)

        def _step(carry, key):
            obs, state, alive = carry
            logits, _ = apply_eval(network, params, batch_stats, obs[None])
            action = jnp.argmax(logits[0]).astype(jnp.int32)
            obs, state, reward, done, info = env.step_env(key, state, action, env_params)
            row = {
                "reward": reward,
                "done": done,
                "terminated": info["terminated"],
                "portfolio_value": info["portfolio_value"],
                "position_size": info["position_size"],
                "price": info["price"],
                "action_kind": info["action_kind"],
                "action": action,
                "valid": alive,
            }
            return (obs, state, alive & ~done), row

        _, rows = jax.lax.scan(_step, (obs, state, jnp.ones((), bool)), jax.random.split(k_run, num_steps))
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rows)

    return run


@dataclass
class EpisodeRunner:
    """A compiled, seed-vmapped deterministic episode on one env bundle."""

    bundle: object
    fn: object  # jitted fn(params[K], batch_stats[K], env_params, keys[K]) -> rows [K, num_steps + 1]

    def __call__(self, params, batch_stats, key):
        k = jax.tree.leaves(params)[0].shape[0]
        return jax.device_get(self.fn(params, batch_stats, self.bundle.params, jax.random.split(key, k)))


def make_episode_runner(bundle, network) -> EpisodeRunner:
    """The seed-vmapped jitted episode of `bundle`, cached on the bundle per network architecture."""
    key = ("episode", network.num_actions, network.hidden_size, network.num_layers, network.dropout)
    if key not in bundle.cache:
        fn = _deterministic_episode(bundle.env, network, bundle.num_steps)
        bundle.cache[key] = jax.jit(jax.vmap(fn, in_axes=(0, 0, None, 0)))
    return EpisodeRunner(bundle, bundle.cache[key])


def lane(rows: dict, k: int) -> dict[str, np.ndarray]:
    """Seed k's episode as NumPy history arrays (reset row first, rows after the end dropped)."""
    valid = np.asarray(rows["valid"][k])
    return {key: np.asarray(rows[key][k])[valid] for key in EPISODE_KEYS}


def summarize(history: dict, leverage: float, bar_minutes: float) -> dict[str, float]:
    """Episode numbers of one history (see module doc)."""
    m = trading_jax.episode_metrics(history, periods_per_year(bar_minutes))
    pv = np.asarray(history["portfolio_value"], np.float64)
    bh = trading_jax.buy_and_hold(history["price"], pv[0], leverage)
    return {
        "reward": float(np.sum(history["reward"], dtype=np.float64)),
        "final_pv": float(pv[-1]),
        "log_return": float(m["log_return"]),
        "bh_log_return": float(np.log(bh[-1] / pv[0])) if bh[-1] > 0 else -np.inf,
        "bh_final_pv": float(bh[-1]),
        "sharpe": float(m["sharpe"]),
        "sortino": float(m["sortino"]),
        "max_drawdown": float(m["max_drawdown"]),
        "num_trades": float(m["num_trades"]),
        "time_in_market": float(m["time_in_market"]),
        "steps": float(len(pv) - 1),
    }


def quote_currency(cfg) -> str | None:
    """`eval.quote_currency`, or "USDT" for the bundled BTC/USDT sample (no unit for other data)."""
    given = cfg.eval.get("quote_currency")
    return given if given else (None if cfg.env.data_path else "USDT")


def save_history_png(
    history: dict, path: str, leverage: float, allows_short: bool | None = None, title: str | None = None, *,
    times=None, quote_currency: str | None = None,
) -> str:
    """Draw `trading_jax.render_history` into a PNG (atomically: temporary file, then rename). `times`: the
    episode's execution bars (`market.exec_times`, from the first; cut to the history's length)."""
    if times is not None:
        times = times[: len(history["price"])]
    fig = trading_jax.render_history(
        history, leverage=leverage, allows_short=allows_short, title=title, times=times, quote_currency=quote_currency
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, path)
    return path


def evaluate_policy(runner: EpisodeRunner, params, batch_stats, key, leverage: float):
    """Run the episode for every seed. Returns `(per-seed summaries, rows)`."""
    rows = runner(params, batch_stats, key)
    k = np.asarray(rows["valid"]).shape[0]
    bar_minutes = runner.bundle.market.execute_on.timedelta.total_seconds() / 60
    return [summarize(lane(rows, i), leverage, bar_minutes) for i in range(k)], rows


# --------------------------------------------------------------------------------------- CLI
USAGE = """usage: python -m train.evaluate RUN_DIR [data=PATH] [seed_index=K] [out=DIR] [group.key=value ...]

Evaluates the newest checkpoint of RUN_DIR with the deterministic policy (argmax, BatchNorm eval mode):
on the run's test split and training window, or with data=PATH over the whole of PATH. Writes eval.json and
history PNGs into OUT (default RUN_DIR/eval) and prints a table. Compiled programs are cached as the
trainer's (compilation_cache=auto|off|DIR; TRADING_JAX_COMPILATION_CACHE)."""


def _policy_from_checkpoint(ckpt) -> tuple[dict, dict]:
    policy = ckpt.get("policy")
    if policy is None:
        raise ValueError(f"{ckpt['path']}: this checkpoint holds no policy block")
    to_jnp = lambda tree: jax.tree.map(jnp.asarray, tree)
    return to_jnp(policy["params"]), to_jnp(policy["batch_stats"])


def _parse_args(args) -> tuple[str | None, str | None, int | None, list[str]]:
    data_path, out_dir, seed_index, overrides = None, None, None, []
    for arg in args:
        key, _, value = arg.partition("=")
        if key == "data":
            data_path = value
        elif key == "out":
            out_dir = value
        elif key == "seed_index":
            if not value.strip().lstrip("-").isdigit():
                raise ValueError(f"seed_index={value!r} is not an integer (a seed of the run: 0, 1, ...)")
            seed_index = int(value)
        else:
            overrides.append(arg)
    return data_path, out_dir, seed_index, overrides


def run_features(run_dir: str, features=None):
    """The feature functions a run was trained with from Python (`build_setup(features=)`, recorded in its
    `custom.json`): `features` when given, else imported by name; None for a run of the config's features.
    ValueError, saying how to evaluate from Python, when they cannot be imported."""
    path = os.path.join(run_dir, CUSTOM_FILE)
    if features is not None or not os.path.isfile(path):
        return features
    with open(path) as fh:
        custom = json.load(fh)
    names = custom.get("features")
    if names is None:
        return None
    if any(n is None for n in names):
        raise ValueError(
            f"{run_dir} was trained from Python with its own feature functions ({', '.join(custom['features_repr'])}), "
            "which cannot be imported by name (a lambda, a nested function or one defined in __main__). Evaluate "
            "it from Python: `from train.evaluate import evaluate_run; evaluate_run(RUN_DIR, features=FEATURES)`, "
            "or define the functions at the top level of an importable module"
        )
    try:
        fns = [import_name(n) for n in names]
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"{run_dir} was trained with the feature functions {', '.join(names)}, which do not import here ({err}): "
            "put their module on PYTHONPATH, or evaluate from Python with evaluate_run(RUN_DIR, features=FEATURES)"
        ) from None
    return fns if custom.get("features_per_timeframe") else fns[0]


def _bundles(cfg, data_path, frozen, ckpt, features=None) -> dict:
    """`{span: EnvBundle}`: the run's test split and training window, or the whole of `data=PATH`."""
    if data_path:
        try:
            frame = trading_jax.load_ohlcv(data_path)
        except (OSError, EOFError, ValueError) as err:
            raise ValueError(f"data={data_path}: {str(err).splitlines()[0]}") from None
        return {"data": build_eval_bundle(cfg, frame, frozen, features=features)}
    setup = build_setup(cfg, frozen_features=frozen, features=features)
    change = describe_data_change(ckpt["meta"].get("data"), setup.data)
    if change:
        warnings.warn(f"evaluate: {change} (env.data_path={cfg.env.data_path})", RunWarning, stacklevel=3)
    return {"train": setup.train_eval} if setup.test is None else {"test": setup.test, "train": setup.train_eval}


def evaluate_run(run_dir: str, args: list[str] | tuple[str, ...] = (), *, features=None) -> dict:
    """Evaluate a saved run (see USAGE). Returns `{span: [per-seed summary, ...]}`. Everything is checked
    (the checkpoint, the config stored in it, `seed_index`, the data's shape) before anything is written.
    `features`: the feature function(s) of a run trained from Python with `build_setup(features=...)` (by
    default imported by the names its `custom.json` records)."""
    data_path, out_dir, seed_index, overrides = _parse_args(args)
    path, run_dir = run_dir, resume_dir(run_dir, "RUN_DIR")  # also the run of `RUN_DIR/checkpoints/ckpt_*`
    ckpt = load_checkpoint(path)
    cfg = load_config(overrides, base=stored_config(ckpt["config"], ckpt["path"], overrides))
    features_file = os.path.join(run_dir, "features.json")
    frozen = load_features(features_file) if os.path.isfile(features_file) else None
    params, batch_stats = _policy_from_checkpoint(ckpt)
    k = jax.tree.leaves(params)[0].shape[0]
    if seed_index is not None and not 0 <= seed_index < k:
        raise ValueError(f"seed_index={seed_index}: the run has {k} seed(s); use 0..{k - 1} or leave it out for all")
    seeds = range(k) if seed_index is None else [seed_index]
    bundles = _bundles(cfg, data_path, frozen, ckpt, run_features(run_dir, features))
    first = next(iter(bundles.values()))
    obs_dim = int(first.env.observation_shape[0])
    trained_obs_dim = ckpt["meta"].get("obs_dim")
    if trained_obs_dim is not None and int(trained_obs_dim) != obs_dim:
        raise ValueError(
            f"the policy was trained on {trained_obs_dim} inputs but this data gives {obs_dim}: use the run's "
            "time_frames, window_sizes and features (a run trained from Python with its own feature functions: "
            "evaluate_run(RUN_DIR, features=FEATURES))"
        )
    network = make_network(cfg, int(first.env.num_actions))
    out_dir = out_dir or os.path.join(run_dir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    leverage = float(cfg.env.leverage)
    allows_short = bool(first.env.config.allows_short)
    results = {}
    key = eval_key(int(cfg.seed), int(ckpt["iteration"]))  # the trainer's eval at this checkpoint used it
    for name, bundle in bundles.items():
        runner = make_episode_runner(bundle, network)
        summaries, rows = evaluate_policy(runner, params, batch_stats, key, leverage)
        results[name] = [summaries[i] for i in seeds]
        start, end = bundle.market.exec_times[0], bundle.market.exec_times[-1]
        for i in seeds:
            save_history_png(
                lane(rows, i),
                os.path.join(out_dir, f"history_{name}_seed{i}.png"),
                leverage,
                allows_short=allows_short,
                title=f"{SPAN_TITLES.get(name, name)}: {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} (seed {i})",
                times=bundle.market.exec_times,
                quote_currency=quote_currency(cfg),
            )
    with open(os.path.join(out_dir, "eval.json"), "w") as fh:
        json.dump({"checkpoint": ckpt["path"], "iteration": ckpt["iteration"], "results": results}, fh, indent=1)
    _print_table(results, ckpt)
    return results


def _print_table(results: dict, ckpt: dict) -> None:
    table = Table(title=f"Deterministic evaluation, checkpoint iteration {ckpt['iteration']}")
    table.add_column("span")
    table.add_column("seed", justify="right")
    cols = ("reward", "final_pv", "bh_log_return", "sharpe", "max_drawdown", "num_trades", "steps")
    for c in cols:
        table.add_column(c, justify="right")
    for name, per_seed in results.items():
        for i, s in enumerate(per_seed):
            table.add_row(name, str(i), *(f"{s[c]:.4g}" for c in cols))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def main(argv: list[str] | None = None) -> int:
    """`python -m train.evaluate`: 0 on success, 2 on a user error (one `error:` line, `train.errors.run_cli`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    t0 = time.time()
    cache = [a.partition("=")[2] for a in argv[1:] if a.startswith("compilation_cache=")]
    compile_cache.enable(cache[-1] if cache else "auto")
    code = run_cli(lambda: evaluate_run(argv[0], argv[1:]))
    if code == 0:
        print(f"done in {time.time() - t0:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
