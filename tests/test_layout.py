"The package is exactly the notebooks' export, and every module imports on its own."
import ast, json, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "lllite_nb").glob("*.py") if p.stem not in ("__init__", "_modidx"))


def default_exps() -> dict:
    "Map module name -> notebook for every notebook's `#| default_exp`."
    out = {}
    for nb in (ROOT / "nbs").glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            src = "".join(cell["source"])
            for line in src.splitlines():
                if cell["cell_type"] == "code" and line.strip().startswith("#| default_exp"):
                    out[line.split()[-1]] = nb.name
    return out


def test_every_module_has_its_notebook():
    exps = default_exps()
    for m in MODULES:
        assert m in exps, f"lllite_nb/{m}.py has no notebook with `#| default_exp {m}` (stale module?)"
        head = (ROOT / "lllite_nb" / f"{m}.py").read_text().splitlines()[:6]
        assert any(f"nbs/{exps[m]}" in l for l in head), f"lllite_nb/{m}.py does not name nbs/{exps[m]} in its header"
    assert "__init__" in exps, "no notebook exports lllite_nb/__init__.py"


@pytest.mark.parametrize("mod", MODULES)
def test_module_imports_fresh(mod):
    r = subprocess.run([sys.executable, "-c", f"import lllite_nb.{mod}"], capture_output=True, text=True,
                       env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]


def test_public_api():
    import lllite_nb
    assert callable(lllite_nb.load_pipeline)
