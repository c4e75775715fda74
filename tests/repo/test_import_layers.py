"""The import contracts of `.importlinter` hold: `benchmarks > train > trading_jax`, `trading_jax` imports
none of `train`, `benchmarks` and `tests`, and no package has an import cycle among its modules."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT


def lint_imports_script() -> str:
    """The `lint-imports` of this interpreter's environment (the dev dependencies install it)."""
    script = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert script, 'lint-imports not found: install the dev dependencies (pip install -e ".[dev]")'
    return script


def test_import_contracts_are_kept():
    cmd = [lint_imports_script(), "--no-cache", "--no-logo", ".importlinter"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
