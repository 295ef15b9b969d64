"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Real Binance candles live beside the project (never in it): ../shared/data
SHARED_DATA_DIR = Path(os.environ.get("TRADING_ENGINE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder of real candles; the test is skipped cleanly when it is absent."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"real candles not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR
