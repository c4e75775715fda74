"""`train.loggers.RunLogger` and its backends (jsonl always; csv, tensorboard, wandb), with fake records: no JAX.

The end-to-end check (`python -m train.ppo ... logger.backend=[wandb,tensorboard,csv]` writes `train/loss`)
rides on the CLI smoke run in tests/train/test_cli.py, so it costs no extra compile.
"""

import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from tests.support import tb_events
from train.config import ConfigError, load_config, logger_backends
from train.log_backends import WANDB_ID_FILE, _wandb_run_id
from train.loggers import CSV_FILE, METRICS_FILE, TB_DIR, RunLogger, destinations, read_metrics

F = 64  # frames per iteration of the fake run


def cfg_for(backend: str):
    return load_config([f"logger.backend={backend}"])


def fake_iteration(logger: RunLogger, it: int, loss: float, png: str | None = None) -> None:
    """What the trainer logs for iteration `it`: the training record (with eval keys when `png` is given)."""
    metrics = {"train/loss": np.float32(loss), "train/reward": loss / 10, "time/SPS-total": 1000.0 + it}
    if png is not None:
        logger.log_image("eval/history", png, it * F)
        metrics["eval/reward"] = -loss
    logger.log(metrics, step=it * F, iteration=it)


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("img") / "history.png")
    plt.imsave(path, np.linspace(0, 1, 12 * 20).reshape(12, 20), cmap="gray")
    return path


def metric_keys(records: list[dict]) -> set[str]:
    return {k for r in records if "iteration" in r for k in r if "/" in k}


def test_tensorboard_writes_train_loss_and_images(tmp_path, png):
    with RunLogger(cfg_for("tensorboard"), str(tmp_path)) as logger:
        logger.log({"time/compile": 1.5}, step=0, iteration=0)
        for it, loss in enumerate([0.5, 0.25, 0.125], start=1):
            fake_iteration(logger, it, loss, png if it == 2 else None)
        logger.log({"train/loss": float("nan")}, step=4 * F, iteration=4)  # non-finite: not a TB point
    tb = tb_events.scalars(str(tmp_path / TB_DIR))
    assert tb["train/loss"] == [(64, 0.5), (128, 0.25), (192, 0.125)]
    assert tb["eval/reward"] == [(128, -0.25)] and tb["time/compile"] == [(0, 1.5)]
    assert tb_events.images(str(tmp_path / TB_DIR)) == {"eval/history": [(128, 12, 20)]}
    assert os.path.isfile(tmp_path / METRICS_FILE) and not os.path.exists(tmp_path / CSV_FILE)


def test_csv_has_the_jsonl_keys_and_values(tmp_path, png):
    with RunLogger(cfg_for("csv"), str(tmp_path)) as logger:
        logger.log({"time/compile": 1.5}, step=0, iteration=0)
        fake_iteration(logger, 1, 0.5, png)
        fake_iteration(logger, 2, 0.25)
        logger.log({"train/loss": float("inf")}, step=3 * F, iteration=3, diverged=True)
    table = pd.read_csv(tmp_path / CSV_FILE)
    records = [r for r in read_metrics(str(tmp_path)) if "iteration" in r]  # image records stay in the jsonl
    assert set(table.columns) == {k for r in records for k in r}
    assert table["step"].tolist() == [0, 64, 128, 192] and table["iteration"].tolist() == [0, 1, 2, 3]
    assert table["train/loss"].tolist()[1:3] == [0.5, 0.25] and np.isnan(table["train/loss"].iloc[3])
    assert np.isnan(table["eval/reward"].iloc[2]) and table["eval/reward"].iloc[1] == -0.5
    assert table["diverged"].iloc[-1] in (True, "True") and table["diverged"].iloc[:3].isna().all()


def test_a_list_of_backends_gets_the_same_metric_names(tmp_path, png):
    cfg = cfg_for("[tensorboard,csv]")
    assert logger_backends(cfg) == ("tensorboard", "csv")
    with RunLogger(cfg, str(tmp_path)) as logger:
        for it in (1, 2):
            fake_iteration(logger, it, 1.0 / it, png)
    jsonl = metric_keys(read_metrics(str(tmp_path)))
    assert jsonl == {"train/loss", "train/reward", "time/SPS-total", "eval/reward"}
    assert set(tb_events.scalars(str(tmp_path / TB_DIR))) == jsonl
    assert {c for c in pd.read_csv(tmp_path / CSV_FILE).columns if "/" in c} == jsonl
    assert set(destinations(cfg, str(tmp_path))) == {"jsonl", "tensorboard", "csv"}


def test_none_writes_only_the_jsonl(tmp_path):
    cfg = cfg_for("none")
    with RunLogger(cfg, str(tmp_path)) as logger:
        fake_iteration(logger, 1, 0.5)
    assert sorted(os.listdir(tmp_path)) == [METRICS_FILE]
    assert destinations(cfg, str(tmp_path)) == {"jsonl": str(tmp_path / METRICS_FILE)}
    assert read_metrics(str(tmp_path))[0]["train/loss"] == 0.5


def crash_after(run_dir: str, png: str, iterations: int) -> None:
    """A first run logs `iterations` iterations, then dies mid-write (a torn line in the jsonl and the csv)."""
    with RunLogger(cfg_for("[tensorboard,csv]"), run_dir) as logger:
        logger.log({"time/compile": 2.0}, step=0, iteration=0)
        for it in range(1, iterations + 1):
            fake_iteration(logger, it, float(it), png if it % 2 == 1 else None)
    for name, torn in ((METRICS_FILE, '{"step": 384, "train/lo'), (CSV_FILE, "384,0.1,6,")):
        with open(os.path.join(run_dir, name), "a") as fh:
            fh.write(torn)


def test_resume_drops_records_past_the_checkpoint_in_every_backend(tmp_path, png):
    run_dir = str(tmp_path)
    crash_after(run_dir, png, iterations=5)  # the checkpoint is at iteration 3; 4 and 5 were logged after it
    with RunLogger(cfg_for("[tensorboard,csv]"), run_dir, resume_from=3 * F) as logger:
        kept = read_metrics(run_dir)
        assert max(r["step"] for r in kept) == 3 * F
        assert [r["iteration"] for r in kept if "train/loss" in r] == [1, 2, 3]
        assert [r["step"] for r in kept if "eval/history" in r] == [64, 192]  # eval of iteration 3 stays
        logger.log({"time/compile": 1.0}, step=3 * F, iteration=3)
        for it in (4, 5, 6):
            fake_iteration(logger, it, 10.0 * it, png if it % 2 == 1 else None)
    train = [r for r in read_metrics(run_dir) if "train/loss" in r]
    assert [(r["iteration"], r["train/loss"]) for r in train] == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 40.0),
        (5, 50.0),
        (6, 60.0),
    ]
    table = pd.read_csv(os.path.join(run_dir, CSV_FILE)).dropna(subset=["train/loss"])
    assert table["iteration"].tolist() == [1, 2, 3, 4, 5, 6]
    assert table["train/loss"].tolist() == [1.0, 2.0, 3.0, 40.0, 50.0, 60.0]
    tb = tb_events.scalars(os.path.join(run_dir, TB_DIR))
    assert tb["train/loss"] == [(64, 1.0), (128, 2.0), (192, 3.0), (256, 40.0), (320, 50.0), (384, 60.0)]
    assert tb["eval/reward"] == [(64, -1.0), (192, -3.0), (320, -50.0)]
    assert [s for s, _, _ in tb_events.images(os.path.join(run_dir, TB_DIR))["eval/history"]] == [64, 192, 320]
    assert not [n for n in os.listdir(run_dir) if n.startswith(".tmp-")]


def test_a_fresh_logger_appends_and_repairs_a_torn_line(tmp_path, png):
    run_dir = str(tmp_path)
    crash_after(run_dir, png, iterations=2)
    with RunLogger(cfg_for("csv"), run_dir) as logger:
        fake_iteration(logger, 3, 3.0)
    assert [r.get("iteration") for r in read_metrics(run_dir) if "train/loss" in r] == [1, 2, 3]
    assert pd.read_csv(os.path.join(run_dir, CSV_FILE))["iteration"].tolist() == [0, 1, 2, 3]


def test_read_metrics_skips_a_torn_last_line(tmp_path):
    (tmp_path / METRICS_FILE).write_text(json.dumps({"step": 64, "train/loss": 1.0}) + '\n{"step": 12')
    assert read_metrics(str(tmp_path)) == [{"step": 64, "train/loss": 1.0}]


@pytest.mark.parametrize(
    "value,names",
    [
        ("wandb", ("wandb",)),
        ("none", ()),
        ("[tensorboard,csv]", ("tensorboard", "csv")),
        ("csv,wandb", ("csv", "wandb")),
    ],
)
def test_backend_lists_parse(value, names):
    assert logger_backends(cfg_for(value)) == names


@pytest.mark.parametrize(
    "value,needle",
    [
        ("tensorbord", "unknown backend 'tensorbord'; valid backends are wandb, tensorboard, csv, none"),
        ("[csv,mlflow]", "unknown backend 'mlflow'"),
        ("[none,csv]", "'none' cannot be combined"),
        ("[]", "logger.backend is empty"),
    ],
)
def test_bad_backends_name_the_valid_ones(value, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        cfg_for(value)


def test_a_wandb_id_file_holding_anything_but_an_id_is_replaced(tmp_path):
    (tmp_path / WANDB_ID_FILE).write_text("abc123\n")
    assert _wandb_run_id(str(tmp_path)) == "abc123"
    (tmp_path / WANDB_ID_FILE).write_text("../../elsewhere")
    run_id = _wandb_run_id(str(tmp_path))
    assert run_id.isalnum() and len(run_id) == 8 and (tmp_path / WANDB_ID_FILE).read_text() == run_id
