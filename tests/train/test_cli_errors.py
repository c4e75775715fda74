"""One line and exit 2 for every user error, never a traceback, in both CLIs (issue 11); exit 3 when training
diverges. In-process (`main(argv)` returns the exit code) except two end-to-end checks of the real commands.
Nothing here compiles a training program: every error is found before.
"""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

import train.evaluate as evaluate
from tests.support.paths import REPO_ROOT
from tests.support.train_synth import sine_frame
from train.checkpoint import save_checkpoint
from train.cli import main
from train.config import load_config, to_yaml
from train.errors import EXIT_DIVERGED, TrainingDiverged, run_cli


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _data_cases(tmp_path) -> dict:
    bad_gzip = tmp_path / "bad.csv.gz"
    bad_gzip.write_bytes(b"this is not gzip")
    truncated = tmp_path / "cut.csv.gz"
    full = gzip.compress(sine_frame(50).to_csv().encode())
    truncated.write_bytes(full[: len(full) // 2])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    return {
        "missing": tmp_path / "missing.csv",
        "directory": tmp_path,
        "bad gzip": bad_gzip,
        "truncated gzip": truncated,
        "empty": empty,
        "binary": binary,
    }


@pytest.mark.parametrize("case", ["missing", "directory", "bad gzip", "truncated gzip", "empty", "binary"])
def test_bad_data_file_exits_2_naming_it(tmp_path, capsys, case):
    path = _data_cases(tmp_path)[case]
    run_dir = tmp_path / "run"
    assert main([f"env.data_path={path}", f"logger.run_dir={run_dir}"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: env.data_path={path}: "), line
    assert not run_dir.exists()  # validated before anything was written


@pytest.mark.parametrize(
    "argv, message",
    [
        (["=5"], "error: command line: '=5' has no key; give overrides as group.key=value"),
        (["logger.project=${oc.env:SURELY_NOT_SET_X}"], "error: logger.project: cannot resolve its interpolation"),
        (["env.num_envs=${nope.key}"], "error: env.num_envs: cannot resolve its interpolation"),
        (["optim.learning_rate=1"], "error: command line: unknown config key 'optim.learning_rate'. Did you mean"),
        (["env.num_envs=many"], "error: command line: env.num_envs:"),
    ],
)
def test_bad_command_line_exits_2(capsys, argv, message):
    assert main(argv) == 2
    assert _one_error_line(capsys).startswith(message)


def test_malformed_yaml_exits_2_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  num_envs: 3\n  window_sizes: [1,\n")
    assert main([str(bad)]) == 2
    assert _one_error_line(capsys).startswith(f"error: config file '{bad}' is not valid YAML: ")
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in _one_error_line(capsys)


def _one_seed_run(folder) -> str:
    cfg = load_config(["logger.backend=none"])
    policy = {"params": {"w": np.zeros((1, 3), np.float32)}, "batch_stats": {"mean": np.zeros((1, 3), np.float32)}}
    save_checkpoint(str(folder), {"x": np.zeros(2, np.float32)}, iteration=1, config_yaml=to_yaml(cfg), policy=policy)
    return str(folder)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["seed_index=5"], "error: seed_index=5: the run has 1 seed(s); use 0..0 or leave it out for all"),
        (["seed_index=first"], "error: seed_index='first' is not an integer"),
        (["env.num_envs=x"], "error: command line: env.num_envs:"),
    ],
)
def test_evaluate_user_errors_exit_2(tmp_path, capsys, extra, message):
    run = _one_seed_run(tmp_path / "run")
    assert evaluate.main([run, *extra]) == 2
    assert _one_error_line(capsys).startswith(message)
    assert not os.path.exists(os.path.join(run, "eval"))  # nothing written


def test_evaluate_on_something_that_is_not_a_run(tmp_path, capsys):
    assert evaluate.main([str(tmp_path / "missing")]) == 2
    assert _one_error_line(capsys) == f"error: RUN_DIR={tmp_path / 'missing'}: no such run directory"
    assert evaluate.main([str(tmp_path)]) == 2
    assert "no checkpoint found" in _one_error_line(capsys)


def test_run_cli_exit_codes(capsys):
    def diverge():
        raise TrainingDiverged("non-finite loss at iteration 3\nmore")

    assert run_cli(diverge) == EXIT_DIVERGED == 3
    assert capsys.readouterr().err == "error: non-finite loss at iteration 3\n"
    assert run_cli(lambda: (_ for _ in ()).throw(ValueError("bad value\nValid keys: ...")), more="see --help") == 2
    assert capsys.readouterr().err == "error: bad value (see --help)\n"
    with pytest.raises(KeyError):  # an internal error keeps its traceback
        run_cli(lambda: {}["missing"])


@pytest.mark.parametrize(
    "cmd, message",
    [
        (["train.ppo", "=5"], "error: command line: '=5' has no key"),
        (["train.evaluate", "/nonexistent/run"], "error: RUN_DIR=/nonexistent/run: no such run directory"),
    ],
)
def test_the_real_commands_print_one_line(cmd, message):
    proc = subprocess.run(
        [sys.executable, "-m", *cmd], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and proc.stderr.splitlines() == [proc.stderr.splitlines()[0]], proc.stderr
    assert proc.stderr.startswith(message) and "Traceback" not in proc.stderr
