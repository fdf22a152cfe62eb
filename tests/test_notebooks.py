"Every notebook executes (cells flagged `slow`/`gpu` are skipped), each in a fresh process with a hard timeout."
import os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
TIMEOUT = int(os.environ.get("LLLITE_NB_TIMEOUT", "600"))


@pytest.mark.parametrize("nb", NBS)
def test_notebook_runs(nb):
    nbdev_test = Path(sys.executable).with_name("nbdev_test")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MPLBACKEND="Agg")
    try:
        r = subprocess.run([str(nbdev_test), "--path", f"nbs/{nb}", "--do_print"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{nb} did not finish within {TIMEOUT} s")
    assert r.returncode == 0, f"{nb} failed:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
