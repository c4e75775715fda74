"""README command check: every command in README.md runs, so the README cannot rot.

How a command is covered:

* **Checked here.** A fenced block whose previous non-blank line is `<!-- checked -->`:
  - ```bash blocks: each command (`\\` continuations joined, `# comments` dropped, `&&` chains split) runs with
    `bash -c` from the repository root, with a tiny budget: `TINY` maps the command's module to arguments that
    are appended (a later `key=value` override or argparse option wins), and `PATHS` moves the outputs
    (`runs/`, `benchmarks/results/`) into a temporary directory. The exit code must be 0. Trainer commands
    are also parsed as written by `train.config.load_config`, so the full-size values are validated too.
  - ```python blocks: executed in-process as written. A block marked `<!-- checked when MODULE is installed -->`
    (the Stable-Baselines3 example: SB3 brings torch, which CI does not install) runs where MODULE imports.
* **Run by CI** (`.ci/run`), not here: `pip install -e ".[dev]"` (`.ci/run` installs exactly that) and
  `python -m pytest` (`.ci/run` runs it, and it runs this file); `test_ci_runs_the_readme_test_command` checks
  that `.ci/run` runs the README's test command literally.
* `test_every_readme_command_is_covered` fails on an unmarked shell block and on a checked command with no
  `TINY` entry; `test_docstring_lists_every_command` keeps the list below equal to the README's commands (an
  entry ending in `...` stands for every command that starts with it).

Commands in README.md (in order) and who runs them:

    CI:      pip install -e ".[dev]"
    checked: python -m train.ppo
    CI:      python -m pytest
    checked: python -m train.ppo --help
    checked: python -m train.ppo env.num_envs=128 model.hidden_size=256 optim.lr=1e-4 logger.run_dir=runs/my-run
    checked: python -m train.evaluate runs/my-run
    checked: python -m train.ppo env.num_envs=5000 collector.frames_per_batch=100000 ...
    checked: python -m train.ppo env.data_path=notebooks/data/eurusd_ask_1h_2017.csv env.test_split_start=2017-11-01
    checked: python -m benchmarks.env_throughput
    checked: python -m benchmarks.ppo_throughput
    checked: python -m benchmarks.report benchmarks/results/*.json
    checked: python -m benchmarks.gpu_run benchmarks/results/gpu
    checked: python -m train.ppo env.num_envs=4096 collector.frames_per_batch=81920 loss.mini_batch_size=27304
    checked: python -m train.ppo num_seeds=8
    checked: python -m train.ppo parallel.distributed=true ...
    checked: python -m train.walkforward
    python:  the env example ("The env in ten lines")
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
README = ROOT / "README.md"
MARKER = "<!-- checked -->"
OPTIONAL_MARKER = re.compile(r"^<!-- checked when (\w+) is installed -->$")
SHELL_LANGS = ("bash", "sh", "shell", "console")
CI_COMMANDS = ('pip install -e ".[dev]"', "python -m pytest")

# Appended to a checked command that starts with the key ({tmp} is this module's temporary directory).
TINY = {
    "python -m train.ppo": [
        "env.num_envs=8", "collector.frames_per_batch=64", "collector.total_frames=128", "loss.mini_batch_size=32",
        "model.hidden_size=16", "model.num_layers=1", "logger.backend=none", "logger.progress=false",
        "logger.timing_interval=0", "logger.root_dir={tmp}/runs",
        # evaluation is compiled and run by the train.evaluate check (and by tests/train/test_cli.py)
        "eval.enabled=false",
    ],
    "python -m train.evaluate": [],
    # --allow-busy: a benchmark refuses a busy machine, and a check's tiny run is no measurement
    "python -m benchmarks.env_throughput": ["--quick", "--no-plot", "--allow-busy", "--out", "{tmp}/results"],
    "python -m benchmarks.ppo_throughput": [
        "--num-envs", "8", "--iterations", "1", "--steps-per-env", "4", "--hidden", "16", "--layers", "1",
        "--no-plot", "--allow-busy", "--out", "{tmp}/results",
    ],
    "python -m benchmarks.report": ["--out", "{tmp}/results"],
    "python -m benchmarks.gpu_run": ["--quick"],
    # one window, one seed, a few hundred frames (tests/train/test_walkforward_*.py check the rest)
    "python -m train.walkforward": [
        "walkforward.num_windows=1", "walkforward.train_days=4", "walkforward.test_days=2", "num_seeds=1",
        "env.num_envs=8", "collector.frames_per_batch=64", "collector.total_frames=64", "loss.mini_batch_size=32",
        "model.hidden_size=16", "model.num_layers=1", "walkforward.random_seeds=1", "walkforward.bootstrap_samples=100",
        "walkforward.plots=false", "logger.progress=false", "logger.root_dir={tmp}/runs",
    ],
}
# Output paths the README's commands name, rewritten so a check never writes into the repository.
PATHS = {"runs/": "{tmp}/runs/", "benchmarks/results/": "{tmp}/results/"}


# --------------------------------------------------------------------------------------- parsing
def blocks(text: str) -> list[tuple[str, bool, str, str | None]]:
    """Fenced blocks as `(language, checked, body, module the check needs or None)`, in order."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        prev = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        needs = OPTIONAL_MARKER.match(prev)
        checked = prev == MARKER or needs is not None
        out.append((m.group(1), checked, "\n".join(lines[i + 1 : end]), needs.group(1) if needs else None))
        i = end + 1
    return out


def _strip_comment(line: str) -> str:
    """Drop a `# comment` that starts after whitespace, outside quotes."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
    return line.rstrip()


def shell_commands(body: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", body)
    cmds = []
    for line in joined.splitlines():
        for part in _strip_comment(line).split("&&"):
            if part.strip():
                cmds.append(" ".join(part.split()))
    return cmds


def readme_commands() -> list[tuple[str, bool]]:
    """Every shell command of the README as `(command, checked)`, in order."""
    return [(c, checked) for lang, checked, body, _ in blocks(README.read_text()) if lang in SHELL_LANGS
            for c in shell_commands(body)]


def tiny_key(cmd: str) -> str | None:
    return next((k for k in TINY if cmd == k or cmd.startswith(k + " ")), None)


CHECKED = [c for c, checked in readme_commands() if checked and c not in CI_COMMANDS]


# --------------------------------------------------------------------------------------- coverage
def test_every_readme_command_is_covered():
    assert CHECKED, "no checked commands found: is the <!-- checked --> marker still in README.md?"
    for lang, checked, body, needs in blocks(README.read_text()):
        assert not (needs and lang in SHELL_LANGS), "shell commands are always checked: use <!-- checked -->"
        if lang in SHELL_LANGS or lang == "python":
            assert checked, f"README.md: a ```{lang} block is not marked {MARKER}:\n{body}"
    for cmd in CHECKED:
        assert tiny_key(cmd), f"README command {cmd!r} has no tiny budget: add its module to TINY in {__file__}"


def test_docstring_lists_every_command():
    listed = [ln.split(":", 1)[1].strip() for ln in __doc__.splitlines() if re.match(r"^\s+(CI|checked):", ln)]
    readme = readme_commands()
    assert len(listed) == len(readme), "update the command list in this module's docstring"
    for entry, (cmd, _) in zip(listed, readme, strict=True):
        ok = cmd.startswith(entry[:-3].rstrip()) if entry.endswith("...") else cmd == entry
        assert ok, f"docstring lists {entry!r} where README.md has {cmd!r}"
    kinds = [ln.split(":", 1)[0].strip() for ln in __doc__.splitlines() if re.match(r"^\s+(CI|checked):", ln)]
    for kind, (cmd, checked) in zip(kinds, readme, strict=True):
        assert (kind == "CI") == (cmd in CI_COMMANDS), f"{cmd!r} is listed as {kind}"
        assert checked or kind == "CI", f"{cmd!r} is listed as checked but its README block is not marked"


def test_ci_runs_the_readme_test_command():
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    readme = [c for c, _ in readme_commands()]
    test_cmd = next(c for c in readme if "pytest" in c)
    assert test_cmd in ci, f".ci/run must run the README's test command {test_cmd!r} literally"
    assert any('-e ".[dev]"' in ln and "pip install" in ln for ln in ci), ".ci/run must install -e .[dev]"
    assert readme[:3] == ['pip install -e ".[dev]"', "python -m train.ppo", "python -m pytest"], (
        "the README must start with the two set-up commands"
    )


# --------------------------------------------------------------------------------------- running
@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


def _expand(cmd: str, tmp: Path) -> str:
    for old, new in PATHS.items():
        cmd = re.sub(rf"(?<![\w/.-]){re.escape(old)}", new.format(tmp=tmp), cmd)
    extra = [a.format(tmp=tmp) for a in TINY[tiny_key(cmd)]]
    return cmd + (" " + shlex.join(extra) if extra else "")


@pytest.mark.slow
@pytest.mark.parametrize("cmd", CHECKED)
def test_readme_command_runs(cmd, tmp):
    """Commands run in README order (the evaluate and report commands use what earlier ones wrote)."""
    if cmd.startswith("python -m train.ppo") and "--help" not in cmd:
        from train.config import load_config

        load_config(shlex.split(cmd)[3:])  # the full-size values, as written, pass the config checks
    full = _expand(cmd, tmp)
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", MPLBACKEND="Agg")
    proc = subprocess.run(["bash", "-c", full], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"{full}\nexit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


PYTHON_BLOCKS = [(body, needs) for lang, checked, body, needs in blocks(README.read_text()) if lang == "python"]


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_example_runs(index):
    """Each Python example, executed as written; the env example (a 1024-lane reset and step, and a 1024 x 500
    rollout) is also checked for its shapes."""
    code, needs = PYTHON_BLOCKS[index]
    if needs:
        pytest.importorskip(needs, reason=f"the README's {needs} example runs where {needs} is installed")
    ns: dict = {"__name__": "readme_example"}
    exec(compile(code, f"{README}:python block {index + 1}", "exec"), ns)
    if index == 0:
        assert ns["obs"].shape == (1024, *ns["env"].observation_shape)
        assert ns["traj"]["reward"].shape == (501, 1024)
