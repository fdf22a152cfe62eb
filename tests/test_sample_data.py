"The sample data from one function: the checkout's data_samples/, else the same bytes made in the user cache."
import os, subprocess, sys
from pathlib import Path

from lllite_nb.shapes import sample_data, user_cache_dir

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_in_the_checkout_it_is_data_samples():
    assert sample_data() == SAMPLES


def test_the_cache_holds_the_committed_files_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = sample_data(checkout=False)
    assert d == tmp_path / "xdg" / "lllite_nb" / "data_samples"
    want, got = snapshot(SAMPLES), snapshot(d)
    assert sorted(got) == sorted(want) and len(want) == 3 * 46 + 3
    assert [f for f in want if got[f] != want[f]] == []
    stamp = (d / "dataset.toml").stat().st_mtime_ns
    assert sample_data(checkout=False) == d and (d / "dataset.toml").stat().st_mtime_ns == stamp  # made once, then reused


def test_cache_folder_follows_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert user_cache_dir() == tmp_path / "x" / "lllite_nb"
    monkeypatch.delenv("XDG_CACHE_HOME"); monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert user_cache_dir() == tmp_path / "h" / ".cache" / "lllite_nb"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset, as the XDG spec says
    assert user_cache_dir() == tmp_path / "h" / ".cache" / "lllite_nb"


def test_installed_package_makes_it_in_the_cache(tmp_path):
    "A copy of the package outside the checkout (as after pip install) finds no data_samples/ beside it."
    import shutil
    shutil.copytree(ROOT / "lllite_nb", tmp_path / "site" / "lllite_nb", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PYTHON"))} | dict(HOME=str(tmp_path), PYTHONPATH=str(tmp_path / "site"))
    r = subprocess.run([sys.executable, "-c", "import lllite_nb.shapes as s; print(s.__file__); print(s.sample_data())"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [str(tmp_path / "site/lllite_nb/shapes.py"), str(tmp_path / ".cache/lllite_nb/data_samples")]
    assert snapshot(tmp_path / ".cache/lllite_nb/data_samples") == snapshot(SAMPLES)
