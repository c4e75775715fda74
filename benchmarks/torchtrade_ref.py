"""The TorchTrade 0.1.0 side of `benchmarks.vs_torchtrade`: its vectorized env's step loop and the TorchRL PPO
loop of its `ppo_vectorized` example (docs/semantics.md §6), built from TorchTrade, TorchRL and torch as the example
builds them. Needs the `compare` extra (`pip install -e ".[compare]"`); torch is imported inside the functions, so
importing this module (and `--help`) works without it.

PPO loop per iteration, as the example (docs/semantics.md §6.4), without its evaluation, checkpoints and logger:
`next(collector)` (TorchTrade's `VectorizedSequentialTradingEnv` with the example's transforms, TorchRL's
`Collector`, the actor in training mode), the logged statistics (`.item()`), then `epochs` x (TorchRL `GAE`
as configured there, `time_dim=-3`, `deactivate_vmap=True`, under `no_grad`; extend a `LazyTensorStorage`
replay buffer; every minibatch of a `SamplerWithoutReplacement(drop_last=True)`: LR/clip annealing as the
example writes it, `ClipPPOLoss`, backward, `clip_grad_norm_`, Adam), the loss means, and
`update_policy_weights_()`. The network: TorchTrade's `BatchNormMLP` trunk (hidden x layers, dropout, LeakyReLU)
with Linear policy and value heads in an `ActorValueOperator` (docs/semantics.md §6.3).
"""

from __future__ import annotations

import importlib.metadata
import time

from benchmarks.common import LoadMeter, median

COMPARE_HINT = 'pip install -e ".[compare]"'


def require_torch() -> dict:
    """The versions of torch, torchrl, tensordict and torchtrade; a clear `SystemExit` when one is missing."""
    try:
        import tensordict  # noqa: F401
        import torch  # noqa: F401
        import torchrl  # noqa: F401
        import torchtrade  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"benchmarks.vs_torchtrade needs TorchTrade 0.1.0 and CPU torch ({err.name or err} is not "
                         f"installed): {COMPARE_HINT}") from None
    return {name: importlib.metadata.version(name) for name in ("torch", "torchrl", "tensordict", "torchtrade")}


def set_threads(threads: int | None) -> int:
    """`torch.set_num_threads(threads)` when given; returns the intra-op thread count in use."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def make_env(frame, num_envs: int, env_kwargs: dict, *, features=None, max_traj_length=None, seed: int = 0):
    """TorchTrade's `VectorizedSequentialTradingEnv` on `frame` (timestamp index), from our env settings:
    `time_frames, window_sizes, execute_on, leverage, action_levels, transaction_fee, slippage, initial_cash,
    bankrupt_threshold, random_start`."""
    from torchtrade.envs.offline import VectorizedSequentialTradingEnv, VectorizedSequentialTradingEnvConfig

    e = env_kwargs
    config = VectorizedSequentialTradingEnvConfig(
        num_envs=num_envs, time_frames=list(e["time_frames"]), window_sizes=list(e["window_sizes"]),
        execute_on=e["execute_on"], initial_cash=e["initial_cash"], transaction_fee=float(e["transaction_fee"]),
        slippage=float(e["slippage"]), bankrupt_threshold=float(e.get("bankrupt_threshold", 0.1)),
        leverage=int(e["leverage"]), action_levels=[float(a) for a in e["action_levels"]], seed=seed,
        max_traj_length=max_traj_length, random_start=bool(e.get("random_start", True)))
    return VectorizedSequentialTradingEnv(frame.reset_index(), config, feature_preprocessing_fn=features)


# --------------------------------------------------------------------------------------- env step loop
def env_steps_per_s(frame, num_envs: int, env_kwargs: dict, *, target_s: float = 0.5, repeats: int = 3) -> dict:
    """Random actions through `step_and_maybe_reset` (TorchRL's auto-reset, as a collector steps): the median
    over `repeats` timed runs of at least `target_s` each, after a warm-up."""
    env = make_env(frame, num_envs, env_kwargs)
    td = env.reset()

    def run(min_s: float) -> tuple[int, float]:
        nonlocal td
        steps, t0 = 0, time.perf_counter()
        while steps < 8 or time.perf_counter() - t0 < min_s:
            td["action"] = env.action_spec.rand()
            _, td = env.step_and_maybe_reset(td)
            steps += 1
        return steps, time.perf_counter() - t0

    run(min(target_s, 0.2))
    with LoadMeter() as meter:
        runs = [run(target_s) for _ in range(max(repeats, 1))]
    rates = [num_envs * n / dt for n, dt in runs]
    return {"num_envs": num_envs, "steps_per_s": median(rates), "runs": [list(r) for r in runs],
            "load": meter.result}


# --------------------------------------------------------------------------------------- PPO
def _transformed(env, max_steps: int):
    """The example's transforms (docs/semantics.md §6.2): InitTracker, DoubleToFloat, RewardSum, StepCounter (its limit
    is the frame's row count, in practice none) and a FlattenObservation per market window."""
    from torchrl.envs import (
        Compose,
        DoubleToFloat,
        FlattenObservation,
        InitTracker,
        RewardSum,
        StepCounter,
        TransformedEnv,
    )

    market = [k for k in env.observation_spec.keys() if str(k).startswith("market_data")]
    flatten = [FlattenObservation(first_dim=-2, last_dim=-1, in_keys=[k]) for k in market]
    return TransformedEnv(env, Compose(InitTracker(), DoubleToFloat(), RewardSum(), StepCounter(max_steps=max_steps),
                                       *flatten))


def make_actor_critic(env, hidden: int, layers: int, dropout: float):
    """`(actor, critic)`: the example's BatchNormMLP actor-critic, initialised in eval mode, then `.train()`."""
    import torch
    from tensordict.nn import TensorDictModule
    from torchrl.envs import ExplorationType
    from torchrl.modules import MLP, ActorValueOperator, ProbabilisticActor, ValueOperator
    from torchtrade.models import BatchNormMLP

    spec = env.observation_spec
    market = [k for k in spec.keys() if str(k).startswith("market_data")]
    in_dim = sum(spec[k].shape[-1] for k in market) + spec["account_state"].shape[-1]
    trunk = TensorDictModule(BatchNormMLP(in_dim, hidden, hidden, layers, dropout), in_keys=market + ["account_state"],
                             out_keys=["common_features"])
    head = TensorDictModule(MLP(in_features=hidden, out_features=env.action_spec.n, num_cells=[]),
                            in_keys=["common_features"], out_keys=["logits"])
    actor = ProbabilisticActor(head, in_keys=["logits"], spec=env.full_action_spec_unbatched,
                               distribution_class=torch.distributions.Categorical, return_log_prob=True,
                               default_interaction_type=ExplorationType.RANDOM)
    critic = ValueOperator(MLP(in_features=hidden, out_features=1, num_cells=[]), in_keys=["common_features"])
    model = ActorValueOperator(trunk, actor, critic)
    with torch.no_grad():
        model.eval()
        model(env.fake_tensordict())
        model.train()
    return model.get_policy_operator(), model.get_value_operator()


def build_ppo(frame, shape: dict, env_kwargs: dict, features, seed: int = 0) -> dict:
    """Env, collector, GAE, ClipPPOLoss, Adam and replay buffer of the example, at `shape` (num_envs, steps,
    epochs, minibatches, hidden, layers, dropout, lr, eps, max_grad_norm, gamma, lam, clip, entropy, critic,
    iterations): everything the timed loop needs."""
    import torch
    from torchrl.collectors import Collector
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
    from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value.advantages import GAE

    F = shape["num_envs"] * shape["steps"]
    env = _transformed(make_env(frame, shape["num_envs"], env_kwargs, features=features,
                                max_traj_length=shape["steps"], seed=seed), len(frame))
    actor, critic = make_actor_critic(env, shape["hidden"], shape["layers"], shape["dropout"])
    # one batch more than is drawn: at total_frames the collector closes the env, which fails in torchtrade 0.1.0
    collector = Collector(env, actor, frames_per_batch=F, total_frames=F * (shape["iterations"] + 1), device="cpu")
    collector.set_seed(seed)
    gae = GAE(gamma=shape["gamma"], lmbda=shape["lam"], value_network=critic, average_gae=False, time_dim=-3,
              vectorized=True, deactivate_vmap=True)
    loss = ClipPPOLoss(actor_network=actor, critic_network=critic, clip_epsilon=shape["clip"], loss_critic_type="l2",
                       entropy_coeff=shape["entropy"], critic_coeff=shape["critic"], normalize_advantage=True)
    optim = torch.optim.Adam(loss.parameters(), lr=shape["lr"], weight_decay=0.0, eps=shape["eps"])
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(F), sampler=SamplerWithoutReplacement(drop_last=True),
                                    batch_size=F // shape["minibatches"])
    return {"collector": collector, "gae": gae, "loss": loss, "optim": optim, "buffer": buffer, "frames": F,
            "total_updates": shape["iterations"] * shape["epochs"] * shape["minibatches"]}


def _update(parts: dict, shape: dict, batch, num_updates):
    """One minibatch update as the example writes it (its update counter never moves: alpha stays 1, Q4)."""
    import torch

    optim, loss = parts["optim"], parts["loss"]
    optim.zero_grad(set_to_none=True)
    alpha = 1 - num_updates / parts["total_updates"]
    for group in optim.param_groups:
        group["lr"] = shape["lr"] * alpha
    loss.clip_epsilon.copy_(shape["clip"] * alpha)
    out = loss(batch)
    (out["loss_critic"] + out["loss_objective"] + out["loss_entropy"]).backward()
    torch.nn.utils.clip_grad_norm_(loss.parameters(), max_norm=shape["max_grad_norm"])
    optim.step()
    return out.detach()


def _iteration(parts: dict, shape: dict, collector_iter, num_updates) -> float:
    """One PPO iteration; returns the collection's wall time."""
    import torch

    t0 = time.perf_counter()
    data = next(collector_iter)
    t_collect = time.perf_counter() - t0
    data["action"].float().std().item()
    ended = data["next", "episode_reward"][data["next", "terminated"]]
    if len(ended):
        ended.mean().item()
        data["next", "step_count"][data["next", "terminated"]].sum().item()
    losses = []
    for _ in range(shape["epochs"]):
        with torch.no_grad():
            data = parts["gae"](data)
        parts["buffer"].extend(data.reshape(-1))
        rewards = []
        for batch in parts["buffer"]:
            out = _update(parts, shape, batch, num_updates)
            losses.append(out.select("loss_critic", "loss_entropy", "loss_objective"))
            if "reward" in batch.keys():  # the example's check: the reward sits under "next", so it never logs
                rewards.append(batch["reward"].mean().item())
    for key in ("loss_critic", "loss_entropy", "loss_objective"):
        torch.stack([x[key] for x in losses]).float().mean().item()
    parts["collector"].update_policy_weights_()
    return t_collect


def ppo_frames_per_s(frame, shape: dict, env_kwargs: dict, features, *, warmup: int = 1) -> dict:
    """`shape["iterations"]` iterations of the example's loop (the first `warmup` are not timed): frames/s
    of the median iteration and of the timed iterations end to end, and of the collection alone."""
    import torch

    t0 = time.perf_counter()
    parts = build_ppo(frame, shape, env_kwargs, features)
    setup_s = time.perf_counter() - t0
    collector_iter, num_updates = iter(parts["collector"]), torch.zeros((), dtype=torch.int64)
    warm = [time.perf_counter()]
    for _ in range(warmup):
        _iteration(parts, shape, collector_iter, num_updates)
    warm.append(time.perf_counter())
    it_times, col_times = [], []
    with LoadMeter() as meter:
        for _ in range(shape["iterations"] - warmup):
            t = time.perf_counter()
            col_times.append(_iteration(parts, shape, collector_iter, num_updates))
            it_times.append(time.perf_counter() - t)
    parts["collector"].shutdown()
    F = parts["frames"]
    return {"frames_per_iteration": F, "setup_s": setup_s, "warmup_s": warm[1] - warm[0],
            "iteration_times_s": it_times, "collect_times_s": col_times, "total_fps": F / median(it_times),
            "end_to_end_fps": F * len(it_times) / sum(it_times), "collect_fps": F / median(col_times),
            "load": meter.result}
