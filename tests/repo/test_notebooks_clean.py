"""The notebooks are committed clean: valid nbformat, outputs cleared, and a first code cell tagged `parameters`
that holds the budgets (nbmake executes them in `python -m pytest`; see pyproject.toml)."""


import nbformat
import pytest

from tests.support.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb", "02_custom_data_features_rewards.ipynb", "03_throughput.ipynb", "04_walkforward.ipynb"
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not dirty, f"{path.name}: clear the outputs of code cells {dirty} before committing"
    assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: the first code cell must be tagged"
