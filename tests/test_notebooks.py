"""Every chapter runs alone, as after a plain `pip install`: each notebook is copied into an empty folder (HOME too)
and run cell by cell (`nbrun.py`: cells flagged slow / gpu / eval: false skipped, development packages blocked)
against the package built as a wheel from this checkout, not the checkout itself. Two notebooks run at a time."""
import json, os, shutil, subprocess, sys, zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
TIMEOUT = int(os.environ.get("LLLITE_NB_TIMEOUT", "900"))
JOBS = int(os.environ.get("LLLITE_NB_JOBS", "2"))
SLOW_FIRST = ["04b_fit.ipynb", "06_widgets.ipynb", "04a_trainer.ipynb", "05_inference.ipynb", "05b_probe.ipynb"]  # the longest start first


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    "The package's wheel, built from a copy of the files a `pip install git+...` sees (setup.py, settings.ini, README, lllite_nb/)."
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"; src.mkdir()
    for f in ("setup.py", "settings.ini", "README.md"): shutil.copy(ROOT / f, src)
    shutil.copytree(ROOT / "lllite_nb", src / "lllite_nb", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return next((tmp / "dist").glob("lllite_nb-*.whl"))


@pytest.fixture(scope="session")
def site(wheel, tmp_path_factory) -> Path:
    "The wheel unpacked: the package as pip installs it, first on PYTHONPATH of the runs below."
    d = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(d)
    return d


def alone_env(home: Path, site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PYTHON", "JPY_", "JUPYTER"))}
    return env | dict(HOME=str(home), PYTHONPATH=str(site), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MPLBACKEND="Agg",
                      OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")


def run_alone(nb: str, site: Path, work: Path) -> subprocess.CompletedProcess:
    "Copy one notebook into an empty folder and run it there with HOME in it."
    d = work / Path(nb).stem; d.mkdir()
    shutil.copy(ROOT / "nbs" / nb, d)
    try:
        return subprocess.run([sys.executable, str(ROOT / "tests" / "nbrun.py"), nb], cwd=d, env=alone_env(d, site),
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, -1, "", f"{nb} did not finish within {TIMEOUT} s")


@pytest.fixture(scope="session")
def runs(site, tmp_path_factory, request) -> dict:
    "The selected notebooks started at once, JOBS at a time; each test waits for its own."
    work = tmp_path_factory.mktemp("alone")
    chosen = {it.callspec.params["nb"] for it in request.session.items if "nb" in getattr(getattr(it, "callspec", None), "params", {})}
    order = [n for n in SLOW_FIRST if n in chosen] + [n for n in NBS if n in chosen and n not in SLOW_FIRST]
    pool = ThreadPoolExecutor(JOBS)
    yield {nb: pool.submit(run_alone, nb, site, work) for nb in order}
    pool.shutdown(cancel_futures=True)


def test_wheel_ships_the_model_and_tokenizer(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"lllite_nb/assets/tiny_sdxl/{n}.safetensors" for n in ("unet", "vae", "text_encoder", "text_encoder_2", "canny_lllite")} <= names
    assert {"lllite_nb/assets/tiny_clip/vocab.json", "lllite_nb/assets/tiny_clip/merges.txt"} <= names
    assert not any(n.startswith(("data_samples", "nbs/", "tests/")) for n in names)


def test_runner_skips_what_ci_skips_and_blocks_dev_packages(tmp_path, site):
    cell = lambda s: dict(cell_type="code", source=s, metadata={}, outputs=[], execution_count=None)
    nb = dict(cells=[cell("#| slow\nraise SystemExit(3)"), cell("#| gpu\n1/0"), cell("#|eval: false\n1/0"), cell("x = 1")],
              metadata={}, nbformat=4, nbformat_minor=5)
    nb["cells"].insert(3, cell("import importlib.util\nassert importlib.util.find_spec('pytest') is None  # absent, as libraries check"))
    (tmp_path / "ok.ipynb").write_text(json.dumps(nb))
    nb["cells"].append(cell("import nbdev"))
    (tmp_path / "dev.ipynb").write_text(json.dumps(nb))
    run = lambda n: subprocess.run([sys.executable, str(ROOT / "tests" / "nbrun.py"), n], cwd=tmp_path, env=alone_env(tmp_path, site),
                                   capture_output=True, text=True, timeout=120)
    assert run("ok.ipynb").returncode == 0
    r = run("dev.ipynb")
    assert r.returncode == 1 and "import of nbdev halted" in r.stdout + r.stderr


@pytest.mark.parametrize("nb", NBS)
def test_chapter_runs_alone(nb, runs):
    r = runs[nb].result()
    assert r.returncode == 0, f"{nb} failed alone:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"


def test_no_chapter_reads_outside_its_folder():
    bad = [(nb, i) for nb in NBS for i, c in enumerate(json.loads((ROOT / "nbs" / nb).read_text())["cells"])
           if c["cell_type"] == "code" and "../" in "".join(c["source"])]
    assert bad == []


def test_lllite_demo_from_an_empty_folder(tmp_path, site):
    "The command in a short configuration, run where there is no checkout: sample data from the user cache."
    args = ["--n_train", "8", "--max_train_steps", "2", "--train_batch_size", "4", "--resolution", "64", "--cond_emb_dim", "4",
            "--network_dim", "8", "--steps", "2", "--n_seeds", "1", "--tile", "64"]
    r = subprocess.run([str(Path(sys.executable).with_name("lllite-demo")), *args], cwd=tmp_path, env=alone_env(tmp_path, site), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "outputs" / "demo"
    assert sorted(p.name for p in out.glob("*.png")) == [f"compare_{i:04d}.png" for i in range(6)] + ["demo_lllite-loss.png", "overview.png"]
    assert (out / "demo_lllite.safetensors").is_file() and (tmp_path / ".cache" / "lllite_nb" / "data_samples" / "dataset.toml").is_file()


def cells(nb: str) -> list:
    return json.loads((ROOT / "nbs" / nb).read_text())["cells"]


def git_url() -> str:
    return next(l.split("=", 1)[1].strip() for l in (ROOT / "settings.ini").read_text().splitlines() if l.startswith("git_url"))


@pytest.mark.parametrize("nb", NBS)
def test_chapter_opens_in_colab_and_installs_itself(nb):
    cs = cells(nb)
    assert cs[0]["cell_type"] == "markdown" and "".join(cs[0]["source"]).startswith("# ")
    badge = f"(https://colab.research.google.com/github/lllite-nb/lllite-nb/blob/main/nbs/{nb})"
    assert badge in "".join(cs[0]["source"]), f"{nb}: no Open-in-Colab badge for its own file in the title cell"
    first = "".join(next(c for c in cs if c["cell_type"] == "code")["source"])
    assert 'find_spec("lllite_nb") is None' in first and f'"lllite-nb @ git+{git_url()}"' in first


def test_markdown_images_are_absolute_and_exist():
    import re
    raw, badge = "https://raw.githubusercontent.com/lllite-nb/lllite-nb/main/nbs/images/", "https://colab.research.google.com/assets/colab-badge.svg"
    found = [(nb, u) for nb in NBS for c in cells(nb) if c["cell_type"] == "markdown"
             for u in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", "".join(c["source"])) + re.findall(r"<img[^>]+src=\"([^\"]+)", "".join(c["source"])) if u != badge]
    assert found and [(nb, u) for nb, u in found if not u.startswith(raw)] == []
    assert [u for _, u in found if not (ROOT / "nbs" / "images" / u.removeprefix(raw)).is_file()] == []


def test_readme_first_example_draws_its_prompt(tmp_path, site):
    "The README's first Python block, run in an empty folder: a red circle where the guide has it (lower left)."
    import re
    import numpy as np
    from PIL import Image
    from lllite_nb.shapes import analyse_shapes
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    r = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=alone_env(tmp_path, site), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    found = analyse_shapes(Image.open(tmp_path / "red_circle.png"))
    assert [(o["colour"], o["shape"]) for o in found["shapes"]] == [("red", "circle")]
    ys, xs = np.nonzero(found["shapes"][0]["mask"])
    assert xs.mean() < 64 < ys.mean()  # the guide's circle is centred near (46, 89)


def test_gpu_cells_do_nothing_without_a_gpu():
    "Run All on a CPU runs `#| gpu` cells too: each does its work only under `if torch.cuda.is_available()`."
    gpu = [(nb, "".join(c["source"])) for nb in NBS for c in cells(nb) if c["cell_type"] == "code" and "#| gpu" in "".join(c["source"])]
    assert {nb for nb, _ in gpu} == {"00a_models.ipynb", "04b_fit.ipynb", "05_inference.ipynb", "06_widgets.ipynb"}
    for nb, src in gpu:
        top = [l for l in src.splitlines() if l and not l.startswith((" ", "#|"))]
        assert top[-1].startswith("if torch.cuda.is_available()") and all(l.startswith("import ") for l in top[:-1]), (nb, top)
