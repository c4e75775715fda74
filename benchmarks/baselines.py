"""Per-env Python baselines: the NumPy scalar oracle `tests/support/reference_env.py` on config (a).

* `scalar_loop`: one `ReferenceEnv` stepped in a Python loop with random actions, auto-reset on done
  (the "standard" per-env env).
* `process_pool`: `processes` worker processes, each stepping its own env for the budget; steps/s summed.
* `process_pool_lockstep`: a ParallelEnv stand-in: each step the parent sends one action to each of
  `processes` workers over a pipe and receives `(obs, reward, done)` back.

Every env observes exactly what the JAX env does: config (a)'s execution bars and the flat market windows
(from the same `Market`), with the oracle appending `account_state`. Workers are spawned (not forked: the
parent runs JAX threads) and import only NumPy and the oracle. The oracle is test code, not part of the
installed package: the baselines run from the repository root (`python -m benchmarks.env_throughput`).
"""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import configs

CONFIG = "a"


def reference_inputs(name: str = CONFIG) -> tuple[np.ndarray, np.ndarray, dict]:
    """`(ohlc [T, 4] float32, windows [T, D] float32, RefConfig kwargs)` of a benchmark config.

    `windows[i]` is the flat market part of the observation at exec index i (timeframes in order, each
    `[w, F]` flattened), i.e. `Market.windows_at(i)` for every i at once.
    """
    market = configs.market(name)
    data = market.data
    parts = []
    for feats, rows, w in zip(data.features, data.row_index, market.window_sizes, strict=True):
        feats, rows = np.asarray(feats), np.asarray(rows)
        idx = rows[:, None] + 1 + np.arange(w)[None, :]  # [T, w] into the zero-padded table
        parts.append(feats[idx].reshape(len(rows), -1))
    windows = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
    money = dict(configs.CONFIGS[name][1])
    return np.asarray(data.ohlc, np.float32), windows, money


def _oracle():
    """The NumPy oracle module, `tests/support/reference_env.py` of this checkout.

    `tests` is a package of the repository, not of the installed distribution: from the repository root it
    imports as usual; from elsewhere (a notebook in notebooks/) it is loaded from the checkout beside
    `benchmarks/`, without touching `sys.path`."""
    try:
        return importlib.import_module("tests.support.reference_env")
    except ModuleNotFoundError:
        pass
    package = Path(__file__).resolve().parents[1] / "tests"
    if not (package / "support" / "reference_env.py").is_file():
        raise ImportError(f"the baselines step the NumPy oracle tests/support/reference_env.py, which is not in "
                          f"{package.parent}: run them from a checkout of the repository")
    spec = importlib.util.spec_from_file_location("tests", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    sys.modules["tests"] = module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return importlib.import_module("tests.support.reference_env")


def _make_env(ohlc, windows, money: dict, seed: int):
    oracle = _oracle()
    return oracle.ReferenceEnv(ohlc, oracle.RefConfig(seed=seed, **money), windows=windows)


def _step_for(env, budget_s: float, seed: int) -> tuple[int, int, float]:
    """Step `env` with random actions (auto-reset) for about `budget_s`: `(steps, episodes, seconds)`."""
    actions = np.random.default_rng(seed).integers(0, env.num_actions, 1 << 14).tolist()
    mask = len(actions) - 1
    env.reset()
    steps = episodes = 0
    t0 = time.perf_counter()
    deadline = t0 + budget_s
    while True:
        for _ in range(256):
            if env.step(actions[steps & mask])["done"]:
                env.reset()
                episodes += 1
            steps += 1
        if time.perf_counter() >= deadline:
            return steps, episodes, time.perf_counter() - t0


def scalar_loop(inputs, budget_s: float = 3.0, seed: int = 0) -> dict:
    """One env in a Python loop, in this process."""
    ohlc, windows, money = inputs
    steps, episodes, seconds = _step_for(_make_env(ohlc, windows, money, seed), budget_s, seed)
    return {"name": "scalar_loop", "label": "scalar Python loop (NumPy oracle)", "processes": 1,
            "steps": steps, "episodes": episodes, "seconds": seconds, "steps_per_s": steps / seconds}


def _independent_worker(ohlc, windows, money, budget_s, seed):
    return _step_for(_make_env(ohlc, windows, money, seed), budget_s, seed)


def process_pool(inputs, budget_s: float = 3.0, processes: int = 2) -> dict:
    """`processes` workers, each stepping its own env for the budget; throughput summed."""
    ohlc, windows, money = inputs
    with mp.get_context("spawn").Pool(processes) as pool:
        res = pool.starmap(_independent_worker, [(ohlc, windows, money, budget_s, 1 + i) for i in range(processes)])
    return {"name": "process_pool", "label": f"process pool ({processes} proc, independent)",
            "processes": processes, "steps": sum(r[0] for r in res), "episodes": sum(r[1] for r in res),
            "seconds": max(r[2] for r in res), "steps_per_s": sum(r[0] / r[2] for r in res)}


def _lockstep_worker(conn, ohlc, windows, money, seed):
    env = _make_env(ohlc, windows, money, seed)
    conn.send(env.reset()["obs"])
    while True:
        action = conn.recv()
        if action is None:
            break
        rec = env.step(action)
        obs = env.reset()["obs"] if rec["done"] else rec["obs"]
        conn.send((obs, rec["reward"], rec["done"]))
    conn.close()


def process_pool_lockstep(inputs, budget_s: float = 3.0, processes: int = 2, seed: int = 0) -> dict:
    """ParallelEnv stand-in: per step, send an action to every worker, then gather every `(obs, reward, done)`."""
    ohlc, windows, money = inputs
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for i in range(processes):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_lockstep_worker, args=(child, ohlc, windows, money, 1 + i), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        for c in pipes:
            c.recv()  # reset observation: the worker is ready
        actions = np.random.default_rng(seed).integers(0, 3, (1 << 12, processes)).tolist()
        mask = len(actions) - 1
        steps = episodes = 0
        t0 = time.perf_counter()
        deadline = t0 + budget_s
        while time.perf_counter() < deadline:
            for _ in range(64):
                for c, a in zip(pipes, actions[steps & mask], strict=True):
                    c.send(a)
                for c in pipes:
                    episodes += c.recv()[2]
                steps += 1
        seconds = time.perf_counter() - t0
    finally:
        for c in pipes:
            c.send(None)
        for p in procs:
            p.join(timeout=5)
    return {"name": "process_pool_lockstep", "label": f"process pool (lock-step, {processes} proc)",
            "processes": processes, "steps": steps * processes, "episodes": int(episodes), "seconds": seconds,
            "steps_per_s": steps * processes / seconds}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def run_all(budget_s: float = 3.0, processes: int | None = None) -> list[dict]:
    """The three baselines on config (a), one after the other (each for `budget_s` of stepping)."""
    processes = processes or usable_cores()
    inputs = reference_inputs(CONFIG)
    out = []
    for fn, kw in ((scalar_loop, {}), (process_pool, {"processes": processes}),
                   (process_pool_lockstep, {"processes": processes})):
        row = fn(inputs, budget_s=budget_s, **kw)
        row["config"] = CONFIG
        row["obs_dim"] = int(inputs[1].shape[1] + 6)
        print(f"  baseline {row['label']}: {row['steps_per_s']:.4g} steps/s", file=sys.stderr, flush=True)
        out.append(row)
    return out
