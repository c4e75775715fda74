"""The extra logger backends of `train.loggers.RunLogger`: CSV, TensorBoard (tensorboardX) and wandb.

Each backend gets the same metric names at the same step (collected frames per agent). `log(step, metrics,
record)`: `metrics` are the run's metric values (JSON-clean: non-finite floats are None), `record` the
whole `metrics.jsonl` record (metrics plus `step`, `wall_time`, `iteration`, ...). `resume_from` (a step):
records past it are dropped where the backend allows it (see each class).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
import uuid
import warnings

CSV_FILE = "metrics.csv"
TB_DIR = "tensorboard"
WANDB_DIR = "wandb"
WANDB_ID_FILE = "wandb_id.txt"


def atomic_write(path: str, text: str) -> None:
    """Replace `path` by `text` in one step: a temporary file in the same directory, fsynced, then `os.replace`."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def complete_text(path: str) -> tuple[str, bool]:
    """The file's text without a torn last line (one a `kill -9` cut before its newline), and whether one was cut."""
    with open(path, newline="") as fh:
        text = fh.read()
    if not text or text.endswith("\n"):
        return text, False
    return text[: text.rfind("\n") + 1], True


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


class CsvBackend:
    """`<run_dir>/metrics.csv`: one row per record, one column per key (`step`, `wall_time`, `iteration`, the
    metrics); empty cells where a record lacks a key (eval columns on iterations without evaluation). A key
    seen for the first time widens the header (the file is rewritten atomically, a few times per run)."""

    def __init__(self, path: str, resume_from: int | None = None):
        self.path = path
        self.fields: list[str] = []
        if not os.path.isfile(path):
            return
        text, torn = complete_text(path)
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
        self.fields = list(reader.fieldnames or [])
        if resume_from is not None:
            rows = [r for r in rows if r.get("step") and float(r["step"]) <= resume_from]
        if torn or resume_from is not None:
            self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, buf.getvalue())

    def log(self, step: int, metrics: dict, record: dict) -> None:
        row = {k: ("" if v is None else v) for k, v in record.items() if not isinstance(v, (list, dict))}
        new = [k for k in row if k not in self.fields]
        if new:
            rows = []
            if os.path.isfile(self.path):
                rows = list(csv.DictReader(io.StringIO(complete_text(self.path)[0])))
            self.fields += new
            self._rewrite(rows + [row])
            return
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.fields, lineterminator="\n").writerow(row)

    def log_image(self, key: str, path: str, step: int) -> None:
        pass  # images live in plots/ and in metrics.jsonl

    def close(self) -> None:
        pass


class TensorBoardBackend:
    """`<run_dir>/tensorboard/events.out.tfevents.*` via tensorboardX (no TensorFlow): every finite numeric
    metric as a scalar, eval history plots as images.

    On resume, `SummaryWriter(purge_step=resume_from + 1)` starts a new events file with a session-start
    marker; TensorBoard then hides every event of the earlier files at a step past `resume_from`. The old
    bytes stay on disk (TensorBoard's own mechanism): readers other than TensorBoard must apply that rule.
    Files sort by name in the order TensorBoard reads them (a nanosecond suffix breaks same-second ties)."""

    def __init__(self, logdir: str, resume_from: int | None = None, flush_secs: int = 10):
        from tensorboardX import SummaryWriter

        self.logdir = logdir
        self._writer = SummaryWriter(
            logdir,
            purge_step=None if resume_from is None else int(resume_from) + 1,
            flush_secs=flush_secs,
            filename_suffix=f".{time.time_ns():020d}.{os.getpid()}",
        )

    def log(self, step: int, metrics: dict, record: dict) -> None:
        for key, value in metrics.items():
            if _finite_number(value):
                self._writer.add_scalar(key, value, global_step=step)

    def log_image(self, key: str, path: str, step: int) -> None:
        from matplotlib.image import imread

        image = imread(path)[..., :3]  # PNG: float RGB(A) in [0, 1]
        self._writer.add_image(key, image, global_step=step, dataformats="HWC")

    def close(self) -> None:
        self._writer.close()


class WandbBackend:
    """wandb in `logger.mode` (offline by default: files under `<run_dir>/wandb`, sync later with `wandb sync`).

    The run id is kept in `<run_dir>/wandb_id.txt`, so a resumed run continues the same wandb run
    (`resume="allow"`). Limitation: this backend cannot delete what wandb already holds. Online, wandb drops
    (with a warning) a record whose step is below the run's current step, so the iterations logged before a
    crash keep their first values (resume is exact: only `time/*` differ) and later ones are added. Offline,
    each process writes its own `offline-run-*` folder under the same run id, and `wandb sync` uploads them
    to one run (sync them oldest first); how wandb merges a step seen twice is then wandb's rule.
    `metrics.jsonl`, the CSV and TensorBoard are exact.
    """

    def __init__(self, lg, run_dir: str, config_dict: dict | None):
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=lg.project,
            group=lg.group,
            name=lg.exp_name,
            dir=run_dir,
            mode=lg.mode,
            id=_wandb_run_id(run_dir),
            resume="allow",
            config=config_dict,
            settings=wandb.Settings(silent=True, console="off"),
        )

    @classmethod
    def open(cls, lg, run_dir: str, config_dict: dict | None):
        """The backend, or None (with a warning) when wandb fails to start offline; online failures raise."""
        try:
            return cls(lg, run_dir, config_dict)
        except Exception as err:  # noqa: BLE001 - logging must not kill a training run
            if lg.mode == "online":
                raise RuntimeError(
                    f"wandb online logging failed to start ({err}); run `wandb login`, or use "
                    "logger.mode=offline or another logger.backend"
                ) from err
            warnings.warn(f"wandb failed to start ({err}); not logging to wandb", stacklevel=3)
            return None

    def log(self, step: int, metrics: dict, record: dict) -> None:
        self.run.log({k: v for k, v in metrics.items() if v is not None}, step=step)

    def log_image(self, key: str, path: str, step: int) -> None:
        self.run.log({key: self._wandb.Image(path)}, step=step)

    def close(self) -> None:
        self.run.finish()


def _wandb_run_id(run_dir: str) -> str:
    """The run's wandb id from `wandb_id.txt` (created on first use); a file that holds anything but a short
    alphanumeric id is ignored and replaced."""
    id_file = os.path.join(run_dir, WANDB_ID_FILE)
    if os.path.isfile(id_file):
        with open(id_file) as fh:
            run_id = fh.read().strip()
        if run_id.isalnum() and len(run_id) <= 64:
            return run_id
    run_id = uuid.uuid4().hex[:8]
    atomic_write(id_file, run_id)
    return run_id
