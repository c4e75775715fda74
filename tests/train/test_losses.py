"""GAE, PPO loss terms, BatchNorm and the actor-critic against hand-written NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train.losses import compute_gae, explained_variance, normalize_advantages, ppo_loss_terms
from train.networks import ActorCritic, TorchBatchNorm, init_variables, num_params


def gae_numpy(rewards, values, next_values, terminated, dones, gamma, lam):
    T, N = rewards.shape
    adv = np.zeros((T, N), np.float64)
    for n in range(N):
        nxt = 0.0
        for t in reversed(range(T)):
            delta = rewards[t, n] + gamma * (1.0 - terminated[t, n]) * next_values[t, n] - values[t, n]
            nxt = delta + gamma * lam * (1.0 - dones[t, n]) * nxt
            adv[t, n] = nxt
    return adv, adv + values


@pytest.fixture(scope="module")
def gae_batch():
    rng = np.random.default_rng(0)
    T, N = 7, 4
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    # next_values[t] = V(true next obs); it equals values[t + 1] inside an episode, but NOT after a done
    # step (the true last obs of a truncated episode differs from the reset obs of the next row).
    next_values = np.concatenate([values[1:], rng.normal(size=(1, N))]).astype(np.float32)
    terminated = np.zeros((T, N), bool)
    truncated = np.zeros((T, N), bool)
    terminated[2, 0] = True  # bankrupt mid-batch
    truncated[4, 0] = True  # and a truncation later in the same lane
    truncated[1, 1] = True
    truncated[3, 1] = True
    terminated[6, 2] = True  # terminal on the last row
    truncated[6, 3] = True  # truncation on the last row
    dones = terminated | truncated
    for t, n in zip(*np.nonzero(dones), strict=False):
        next_values[t, n] = rng.normal() * 5  # V(final_observation): unrelated to the next row
    return rewards, values, next_values, terminated, dones


@pytest.mark.parametrize("gamma,lam", [(0.9, 0.95), (0.99, 1.0), (0.9, 0.0)])
def test_gae_matches_numpy_with_terminations_and_truncations(gae_batch, gamma, lam):
    rewards, values, next_values, terminated, dones = gae_batch
    adv, targets = compute_gae(*map(jnp.asarray, gae_batch), gamma, lam)
    adv_np, targets_np = gae_numpy(*gae_batch, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), adv_np, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(targets), targets_np, rtol=1e-5, atol=1e-5)


def test_gae_bootstraps_truncation_not_termination(gae_batch):
    rewards, values, next_values, terminated, dones = gae_batch
    adv, _ = compute_gae(*map(jnp.asarray, gae_batch), 0.9, 0.95)
    adv = np.asarray(adv)
    # terminated: no bootstrap, no recursion
    np.testing.assert_allclose(adv[2, 0], rewards[2, 0] - values[2, 0], rtol=1e-6)
    # truncated: bootstrap from V(final obs), no recursion into the next episode
    np.testing.assert_allclose(adv[4, 0], rewards[4, 0] + 0.9 * next_values[4, 0] - values[4, 0], rtol=1e-6)


def test_gae_lambda_zero_is_the_references_one_step_td(gae_batch):
    rewards, values, next_values, terminated, dones = gae_batch
    adv, _ = compute_gae(*map(jnp.asarray, gae_batch), 0.9, 0.0)
    td = rewards + 0.9 * (1 - terminated) * next_values - values
    np.testing.assert_allclose(np.asarray(adv), td, rtol=1e-5, atol=1e-6)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_ppo_loss_terms_match_numpy():
    rng = np.random.default_rng(1)
    B, A = 32, 3
    logits = rng.normal(size=(B, A)).astype(np.float32)
    values = rng.normal(size=B).astype(np.float32)
    actions = rng.integers(0, A, B).astype(np.int32)
    old_lp = (_log_softmax(logits)[np.arange(B), actions] + rng.normal(scale=0.2, size=B)).astype(np.float32)
    adv = rng.normal(loc=0.3, scale=2.0, size=B).astype(np.float32)
    targets = rng.normal(size=B).astype(np.float32)
    eps = 0.1
    total, terms = ppo_loss_terms(
        jnp.asarray(logits),
        jnp.asarray(values),
        jnp.asarray(actions),
        jnp.asarray(old_lp),
        jnp.asarray(adv),
        jnp.asarray(targets),
        eps,
        critic_coeff=0.5,
        entropy_coeff=0.01,
    )
    lp = _log_softmax(logits.astype(np.float64))
    a = (adv - adv.mean()) / max(adv.std(ddof=1), 1e-6)
    ratio = np.exp(lp[np.arange(B), actions] - old_lp)
    obj = -np.mean(np.minimum(ratio * a, np.clip(ratio, 1 - eps, 1 + eps) * a))
    ent = -np.sum(np.exp(lp) * lp, -1).mean()
    critic = 0.5 * np.mean((values - targets) ** 2)
    np.testing.assert_allclose(float(terms["loss_objective"]), obj, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss_entropy"]), -0.01 * ent, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss_critic"]), critic, rtol=1e-5)
    np.testing.assert_allclose(float(total), obj + critic - 0.01 * ent, rtol=1e-5)
    np.testing.assert_allclose(float(terms["approx_kl"]), np.mean((ratio - 1) - np.log(ratio)), rtol=1e-4)
    # torchrl's kl_approx is the k1 estimator mean(old - new); here the log-prob noise makes it differ from k3
    k1 = np.mean(old_lp - lp[np.arange(B), actions])
    np.testing.assert_allclose(float(terms["kl_approx"]), k1, rtol=1e-4)
    assert abs(k1 - np.mean((ratio - 1) - np.log(ratio))) > 1e-3
    np.testing.assert_allclose(float(terms["clip_fraction"]), np.mean(np.abs(ratio - 1) > eps), rtol=1e-6)


def test_advantage_normalisation_floor():
    const = jnp.full((8,), 3.0)
    np.testing.assert_allclose(np.asarray(normalize_advantages(const)), 0.0)
    x = jnp.asarray([1.0, 2.0, 4.0])
    np.testing.assert_allclose(np.asarray(normalize_advantages(x)), (x - x.mean()) / np.std(x, ddof=1), rtol=1e-6)


def test_minibatch_of_one_skips_advantage_normalisation():
    """torchrl normalises only when the advantage has more than one element; the loss then uses the raw A."""
    np.testing.assert_array_equal(np.asarray(normalize_advantages(jnp.asarray([2.5]))), [2.5])
    logits = jnp.asarray([[0.2, -0.1, 0.4]])
    old_lp = float(jax.nn.log_softmax(logits)[0, 1]) - 0.05  # ratio exp(0.05) = 1.051, inside the clip range
    total, terms = ppo_loss_terms(
        logits, jnp.asarray([0.3]), jnp.asarray([1]), jnp.asarray([old_lp]), jnp.asarray([2.5]), jnp.asarray([1.0]), 0.1
    )
    np.testing.assert_allclose(float(terms["loss_objective"]), -np.exp(0.05) * 2.5, rtol=1e-5)


def test_explained_variance():
    t = jnp.asarray([1.0, 2.0, 3.0, 4.0])
    assert float(explained_variance(t, t)) == pytest.approx(1.0)
    assert float(explained_variance(jnp.zeros(4), t)) == pytest.approx(0.0)


def test_torch_batchnorm_train_and_eval():
    rng = np.random.default_rng(2)
    x = rng.normal(2.0, 3.0, size=(10, 4)).astype(np.float32)
    bn = TorchBatchNorm()
    variables = bn.init(jax.random.PRNGKey(0), jnp.asarray(x), train=False)
    y, upd = bn.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    mean, var = x.mean(0), x.var(0)
    np.testing.assert_allclose(np.asarray(y), (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    stats = upd["batch_stats"]
    np.testing.assert_allclose(np.asarray(stats["mean"]), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(stats["var"]), 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-5)  # torch: unbiased
    y_eval = bn.apply({"params": variables["params"], "batch_stats": stats}, jnp.asarray(x), train=False)
    expect = (x - 0.1 * mean) / np.sqrt(0.9 + 0.1 * x.var(0, ddof=1) + 1e-5)
    np.testing.assert_allclose(np.asarray(y_eval), expect, rtol=1e-4, atol=1e-5)


def test_actor_critic_matches_reference_size_and_init():
    net = ActorCritic(num_actions=3, hidden_size=128, num_layers=4, dropout=0.1)
    variables = init_variables(net, jax.random.PRNGKey(0), 126)
    assert num_params(variables["params"]) == 83_844  # spec §6.3
    dense0 = variables["params"]["BatchNormMLP_0"]["TorchDense_0"]
    bound = 1 / np.sqrt(126)
    for leaf in (dense0["kernel"], dense0["bias"]):
        assert float(jnp.max(jnp.abs(leaf))) <= bound
    assert float(jnp.std(dense0["kernel"])) == pytest.approx(bound / np.sqrt(3), rel=0.05)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 7, 126))
    logits, value = net.apply(variables, obs, train=False)
    assert logits.shape == (5, 7, 3) and value.shape == (5, 7)
    # train mode: dropout draws differ per key, batch statistics are updated
    (l1, _), upd = net.apply(
        variables, obs, train=True, rngs={"dropout": jax.random.PRNGKey(2)}, mutable=["batch_stats"]
    )
    (l2, _), _ = net.apply(variables, obs, train=True, rngs={"dropout": jax.random.PRNGKey(3)}, mutable=["batch_stats"])
    assert not np.allclose(np.asarray(l1), np.asarray(l2))
    assert not np.allclose(np.asarray(upd["batch_stats"]["BatchNormMLP_0"]["TorchBatchNorm_0"]["mean"]), 0.0)
