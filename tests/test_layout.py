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
    import lllite_nb, lllite_nb.models
    assert lllite_nb.load_pipeline is lllite_nb.models.load_pipeline


def chapter_order() -> dict:
    "Module name -> position of its notebook in the story (the sorted notebook names)."
    exps = default_exps()
    order = sorted(set(exps.values()))
    return {m: order.index(nb) for m, nb in exps.items()}


def package_imports(path: Path) -> set:
    "Names of lllite_nb modules a module imports, anywhere in it (functions included)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module: out.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1: out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lllite_nb."): out.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "lllite_nb": out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.Import): out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lllite_nb.")}
    return out


def test_chapters_import_only_earlier_chapters():
    order = chapter_order()
    assert [m for m in sorted(MODULES, key=order.get)][:3] == ["module", "models", "images"]  # story order, as the notebooks sort
    bad = [f"{m} (nbs/{default_exps()[m]}) imports {d} (nbs/{default_exps()[d]})"
           for m in MODULES for d in sorted(package_imports(ROOT / "lllite_nb" / f"{m}.py")) if order[d] >= order[m]]
    assert bad == []


def notebook_imports(nb: Path) -> set:
    "Names of lllite_nb modules a notebook's code cells import (top-level names resolved to their module)."
    from lllite_nb import _HOME
    out = set()
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] != "code": continue
        src = "\n".join(l for l in "".join(cell["source"]).splitlines() if not l.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.module == "lllite_nb":
                out |= {a.name if a.name in MODULES else _HOME[a.name] for a in node.names if a.name in MODULES or a.name in _HOME}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lllite_nb."): out.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import): out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lllite_nb.")}
    return out


def test_notebooks_use_only_earlier_chapters():
    "A reader meets the chapters in order: no notebook cell, exported or not, imports from a later chapter."
    nbs = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb") if p.name != "index.ipynb")
    home = {m: nbs.index(nb) for m, nb in default_exps().items() if nb in nbs}
    bad = [f"nbs/{nb} imports {m} (nbs/{default_exps()[m]})" for i, nb in enumerate(nbs)
           for m in sorted(notebook_imports(ROOT / "nbs" / nb)) if home[m] > i]
    assert bad == []


def test_import_order_check_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from .a import b\nimport lllite_nb.c\ndef f():\n    from lllite_nb.d import e\n    from . import f\n")
    assert package_imports(f) == {"a", "c", "d", "f"}


def test_modules_are_short():
    lines = {m: len((ROOT / "lllite_nb" / f"{m}.py").read_text().splitlines()) for m in MODULES}
    assert {m: n for m, n in lines.items() if n > 400} == {}


def test_front_door_is_lazy_and_explicit():
    import lllite_nb, importlib
    code = "import sys, lllite_nb; print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'datasets', 'cv2') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr[-2000:]
    assert set(lllite_nb.__all__) & set(MODULES) == set()  # no public name shadows a module
    homes = lllite_nb._HOME
    assert {"ControlNetLLLite", "LLLiteModule", "LLLitePipeline", "load_pipeline", "tiny_pipeline", "sdxl_unet_config",
            "build_meta_unet", "training_loss", "LLLiteUNet", "noise_scheduler", "draw_noise", "encode_text", "encode_latents",
            "sdxl_time_ids", "evaluate_control", "analyse_shapes", "edge_f1", "mask_iou", "load_pairs", "make_shapes_dataset",
            "canny", "train", "TrainConfig"} <= set(lllite_nb.__all__)
    assert all(getattr(lllite_nb, n) is getattr(importlib.import_module(f"lllite_nb.{homes[n]}"), n) for n in lllite_nb.__all__)
    assert hasattr(lllite_nb.ControlNetLLLite, "from_file") and hasattr(lllite_nb.ControlNetLLLite, "save")
