"""tests/slow/ holds runs too slow for `make test` (minutes on 2 cores). They are collected only
when asked for: `make test-slow` (`.venv/bin/python -m pytest tests/slow -m slow`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/cluster_head.py


def pytest_ignore_collect(collection_path, config):
    if "slow" not in (config.getoption("markexpr") or ""):
        return collection_path.name.startswith("test_") and collection_path.suffix == ".py"
    return None
