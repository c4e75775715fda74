"""The repository root, so that tests find its files whatever directory pytest runs from."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
