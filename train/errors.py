"""What a user of the two CLIs sees when something is wrong: one line and an exit code, never a traceback.

* exit 2, `error: <one line>`: a user error. `ConfigError` (a bad key or value), any `ValueError` (bad data,
  a damaged or mismatched checkpoint), `OSError` (a missing file, a directory where a file was expected, an
  unwritable run directory, a bad gzip) and `EOFError` (a truncated gzip). The message names the file, key or
  value; only its first line is printed.
* exit 3, `error: <one line>`: `TrainingDiverged` (a NaN or inf in training; the last good checkpoint is kept).
* `RunWarning`s print as one `warning: <one line>` each (a damaged checkpoint skipped, other data than the
  run's, a changed schedule on resume) and do not stop the run.

Anything else is an internal error and keeps its traceback.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
USER_ERRORS = (ValueError, OSError, EOFError)  # ConfigError is a ValueError


class RunWarning(UserWarning):
    """Something about a run the user should know; it goes on."""


class TrainingDiverged(RuntimeError):
    """A NaN or inf in training (loss terms, gradient norm, parameters, BatchNorm statistics or the batch);
    the last good checkpoint is kept."""


def first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _show_run_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {first_line(message) if isinstance(message, Warning) else message}", file=file or sys.stderr)


def run_cli(fn: Callable[[], object], more: str = "") -> int:
    """Call `fn()`; 0 on success, else print one `error:` line on stderr and return the exit code above.

    `more` is appended when the error's message had more lines than the one printed (e.g. a pointer to
    `--help` for the list of valid keys)."""
    show = warnings.showwarning

    def showwarning(message, category, *args, **kwargs):
        if issubclass(category, RunWarning):
            return _show_run_warning(message, category, *args, **kwargs)
        return show(message, category, *args, **kwargs)

    warnings.showwarning = showwarning
    try:
        fn()
    except TrainingDiverged as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return EXIT_DIVERGED
    except USER_ERRORS as err:
        text = first_line(err)
        if more and len([line for line in str(err).splitlines() if line.strip()]) > 1:
            text = f"{text} ({more})"
        print(f"error: {text}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        warnings.showwarning = show
    return 0
