"""Markdown tables and the plot of a `benchmarks.vs_torchtrade` result (ours against TorchTrade, same run)."""

from __future__ import annotations

from benchmarks.common import describe_load, machine_label, si
from benchmarks.common import md_table as _table
from benchmarks.common import pyplot as _plt


def _busy(load: dict | None) -> str:
    return "" if not load else f"{load['others_cores']:.2f}" + (" BUSY" if load["busy"] else "")


def env_markdown(env: dict) -> list[str]:
    devices = sorted({o["devices"] for row in env["rows"] for o in row["ours"]})
    header = ["num_envs", "TorchTrade vectorized"] + [f"trading_jax, {d} device(s)" for d in devices]
    header += [f"ratio, {d} device(s)" for d in devices] + ["other CPU (TorchTrade / ours)"]
    table = []
    for row in env["rows"]:
        by = {o["devices"]: o for o in row["ours"]}
        cells = [str(row["num_envs"]), si(row["torchtrade"]["steps_per_s"])]
        cells += [si(by[d]["steps_per_s"]) if d in by else "" for d in devices]
        cells += [f"{row['ratios'][str(d)]:.1f}x" if str(d) in row["ratios"] else "" for d in devices]
        cells.append(" / ".join([_busy(row["torchtrade"]["load"])] + [_busy(o["load"]) for o in row["ours"]]))
        table.append(cells)
    return [f"Env steps/s, random actions ({env['config']}; raw OHLCV features, no length limit):", "",
            _table(header, table)]


def ppo_markdown(ppo: dict) -> list[str]:
    s, theirs = ppo["shape"], ppo["torchtrade"]
    F = s["num_envs"] * s["steps"]
    rows = [["TorchRL loop of TorchTrade's ppo_vectorized example", si(theirs["total_fps"]),
             si(theirs["end_to_end_fps"]), si(theirs["collect_fps"]), "1.00x",
             f"setup {theirs['setup_s']:.1f} + warm-up {theirs['warmup_s']:.1f}", _busy(theirs["load"])]]
    for o in ppo["ours"]:
        rows.append([f"train.ppo (train.loop.train), {o['devices']} device(s)", si(o["total_fps"]),
                     si(o["end_to_end_fps"]), si(o["collect_fps"]), f"{ppo['ratios'][str(o['devices'])]:.2f}x",
                     f"compile {o['compile_s']:.1f}", _busy(o["load"])])
    header = ["PPO", "frames/s (median iteration)", "frames/s (end to end)", "collect frames/s",
              "ratio (median)", "compile / setup s", "other CPU (cores)"]
    return [f"PPO frames/s: {s['num_envs']} envs x {s['steps']} steps = {F} frames per batch, {s['epochs']} epochs x "
            f"{s['minibatches']} minibatches of {F // s['minibatches']}, BatchNorm MLP {s['layers']}x{s['hidden']} "
            f"dropout {s['dropout']}, {ppo['data']}, {ppo['features']}; {len(theirs['iteration_times_s'])} timed "
            "iterations per side after the warm-up; evaluation, checkpoints and logging off on both sides.", "",
            _table(header, rows)]


def markdown(result: dict) -> str:
    m, v = result["machine"], result["versions"]
    lines = [f"### trading_jax vs TorchTrade {v['torchtrade']}, same run: {machine_label(m)}", "",
             f"`{result['command']}`", "",
             f"torch {v['torch']} ({result['torch_threads']} threads), torchrl {v['torchrl']}, tensordict "
             f"{v['tensordict']}, jax {v['jax']}; {m['date']}. Machine load at start: {describe_load(result['load'])}."]
    if not result["comparable"]:
        lines += ["", "**Measured on a BUSY machine (other CPU above the threshold): these figures are not "
                      "comparable.**"]
    if result.get("env"):
        lines += [""] + env_markdown(result["env"])
    if result.get("ppo"):
        lines += [""] + ppo_markdown(result["ppo"])
    return "\n".join(lines)


def plot(result: dict, path: str) -> str:
    """Left: env steps/s against num_envs (log-log), both sides. Right: PPO frames/s bars with the ratios."""
    plt = _plt()
    fig, (ax_env, ax_ppo) = plt.subplots(1, 2, figsize=(12, 4.5))
    env, ppo = result.get("env"), result.get("ppo")
    if env:
        sizes = [r["num_envs"] for r in env["rows"]]
        ax_env.plot(sizes, [r["torchtrade"]["steps_per_s"] for r in env["rows"]], "s--", color="black",
                    label="TorchTrade vectorized")
        for d in sorted({o["devices"] for r in env["rows"] for o in r["ours"]}):
            pts = [(r["num_envs"], o["steps_per_s"]) for r in env["rows"] for o in r["ours"] if o["devices"] == d]
            ax_env.plot(*zip(*pts, strict=True), "o-", label=f"trading_jax, {d} device(s)")
        ax_env.set(xscale="log", yscale="log", xlabel="num_envs", ylabel="env steps/s", title="Env, random actions")
        ax_env.legend()
    if ppo:
        labels = ["TorchRL example"] + [f"train.ppo, {o['devices']} dev" for o in ppo["ours"]]
        values = [ppo["torchtrade"]["total_fps"]] + [o["total_fps"] for o in ppo["ours"]]
        bars = ax_ppo.bar(labels, values, color=["dimgrey"] + ["tab:blue"] * len(ppo["ours"]))
        for bar, value in zip(bars, values, strict=True):
            ax_ppo.annotate(f"{si(value)} ({value / values[0]:.2f}x)", (bar.get_x() + bar.get_width() / 2, value),
                            ha="center", va="bottom")
        s = ppo["shape"]
        ax_ppo.set(ylabel="frames/s", title=f"PPO, {s['num_envs']} envs x {s['steps']} steps per batch")
    busy = "" if result["comparable"] else " - BUSY machine, not comparable"
    fig.suptitle(f"trading_jax vs TorchTrade, same run: {machine_label(result['machine'])}{busy}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
