import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    "kohya's reference data: ../shared/reference beside the checkout (CI copies shared/ there)."
    d = ROOT.parent / "shared" / "reference"
    if not d.is_dir():
        if os.environ.get("CI"): pytest.fail(f"reference data not found at {d}")  # CI always has shared/
        pytest.skip(f"reference data not found at {d}")
    return d
