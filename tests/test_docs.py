"""The documentation tooling in .ci/docs/ (the site itself is built by `make docs` and checked by `make docs-check`,
about 4 minutes here, outside `make test`): chapter order and page names, nbdev processing with every cell run,
Quarto options -> MyST-NB tags, settled progress bars, widget snapshots, and a check that finds what is wrong."""
import json, re, sys
from pathlib import Path

import pytest
from execnb.nbio import new_nb, mk_cell

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci" / "docs"))
import build, check  # noqa: E402


def test_chapters_order_and_page_names(tmp_path):
    for n in ["03a_shapes", "index", "00b_io", "_scratch", "00_module", "10_later", "04a_trainer", "03_data"]:
        (tmp_path / f"{n}.ipynb").write_text("{}")
    got = [p.stem for p in build.chapters(tmp_path)]
    assert got == ["index", "00_module", "00b_io", "03_data", "03a_shapes", "04a_trainer", "10_later"]
    assert [build.page_name(Path(f"{n}.ipynb")) for n in got] == ["index", "module", "io", "data", "shapes", "trainer", "later"]


def test_terminal_text_settles_progress_bars():
    assert build.terminal_text("a\rb\rc\nd\n") == "c\nd\n"
    s = ("load:   0%|  | 0/7 [00:00<?]\nweights: 100%|#| 3/3\nload:  57%|# | 4/7\rload: 100%|##| 7/7\n")
    assert build.terminal_text(s) == "weights: 100%|#| 3/3\nload: 100%|##| 7/7\n"
    two = "shapes: 100%|#| 40/40 [00:00]\nshapes: 100%|#| 6/6 [00:00]\n100%|#| 2/2\n100%|#| 2/2\n" # four finished bars
    assert build.terminal_text(two) == two
    assert build.terminal_text("\x1b[31mred\x1b[0m 50%|x| 1/2\n") == "red 50%|x| 1/2\n"


def test_unlink_code_only_inside_fences():
    md = "see [`f`](a.html#f)\n```python\ng(x, # see [`f`](a.html#f)\n```\n"
    assert build.unlink_code(md) == "see [`f`](a.html#f)\n```python\ng(x, # see `f`\n```\n"


def test_myst_cell_tags_and_streams():
    from execnb.nbio import NbCell
    c = NbCell(0, dict(cell_type="code", metadata={}, source="#| echo: false\n#| code-fold: show\n#| output: asis\nx = 1\nx",
                       outputs=[dict(output_type="stream", name="stderr", text=["bar: 10%|\r", "bar: 100%|\n"]),
                                dict(output_type="stream", name="stderr", text=["done\n"]),
                                dict(output_type="execute_result", data={"text/plain": ["1"]}, metadata={})]))
    m = build.myst_cell(c)
    assert m["source"] == "x = 1\nx" and m["metadata"] == {"tags": ["remove-input", "hide-input"]}
    assert m["outputs"][0] == dict(output_type="stream", name="stderr", text=["bar: 100%|\n", "done\n"])
    assert len(m["outputs"]) == 2
    bad = NbCell(1, dict(cell_type="code", metadata={}, source="1/0",
                         outputs=[dict(output_type="error", ename="ZeroDivisionError", evalue="", traceback=[])]))
    with pytest.raises(build.DocsError, match="ZeroDivisionError"): build.myst_cell(bad)


def test_api_entry_keeps_nbdevs_anchor_for_methods():
    from execnb.nbio import NbCell
    out = dict(output_type="execute_result", metadata={}, data={"text/markdown": ["---\n\n### Net.save\n\n*Save.*"]})
    err = dict(output_type="stream", name="stderr", text=["a library warning\n"])
    m = build.myst_cell(NbCell(0, dict(cell_type="code", metadata={}, source="#| echo: false\n#| output: asis\nshow_doc(Net.save)",
                                       outputs=[err, out])))
    assert m["metadata"]["tags"] == ["remove-input", "api"] and len(m["outputs"]) == 1
    assert m["outputs"][0]["data"]["text/markdown"] == '<span id="net.save"></span>\n\n### Net.save\n\n*Save.*'
    plain = build.myst_cell(NbCell(1, dict(cell_type="code", metadata={}, source="show_doc(save)", outputs=[
        dict(out, data={"text/markdown": ["---\n\n### save\n"]})])))
    assert plain["outputs"][0]["data"]["text/markdown"] == "### save\n"


def test_page_header_links():
    from nbdev.config import get_config
    h = build.page_header({"title": "T", "description": "D"}, ROOT / "nbs" / "00_module.ipynb", get_config())
    assert h.startswith("# T\n\n{.lead}\nD\n")
    assert "(https://colab.research.google.com/github/lllite-nb/lllite-nb/blob/main/nbs/00_module.ipynb)" in h
    assert "(https://github.com/lllite-nb/lllite-nb/blob/main/nbs/00_module.ipynb)" in h


def _chapter(tmp_path: Path) -> Path:
    cells = [mk_cell("# A chapter\n\n> What it teaches.", "markdown"),
             mk_cell("#| export\ndef double(x: int, # a number\n          ) -> int:\n    \"Twice `x`.\"\n    return 2 * x"),
             mk_cell("#| hide\nsecret = 41"),
             mk_cell("print('loading\\rloaded'); double(secret)"),
             mk_cell("#| slow\nraise RuntimeError('a slow cell must not run')"),
             mk_cell("#| eval: false\nraise RuntimeError('an eval: false cell must not run')"),
             mk_cell("import ipywidgets as W, io\nfrom PIL import Image\nb = io.BytesIO(); Image.new('RGB', (4, 4)).save(b, 'PNG')\n"
                     "W.VBox([W.Label('x'), W.Image(value=b.getvalue(), format='png')])")]
    nb = new_nb(cells, meta=dict(kernelspec=dict(name="python3", language="python", display_name="Python 3")))
    p = tmp_path / "00_chapter.ipynb"
    p.write_text(json.dumps(nb, default=dict))
    return p


def test_stage_runs_every_cell_like_nbdev_test(tmp_path, monkeypatch):
    p = _chapter(tmp_path)
    monkeypatch.setattr(build, "PROC", tmp_path / "proc")
    (tmp_path / "proc").mkdir()
    monkeypatch.chdir(ROOT)
    page, _ = build.stage(str(p), [("00_chapter", "chapter", "A chapter")])
    nb = json.loads((tmp_path / "proc" / f"{page}.ipynb").read_text())
    cells = nb["cells"]
    assert page == "chapter" and cells[0]["source"].startswith("# A chapter\n\n{.lead}\nWhat it teaches.")
    api = [c for c in cells if "api" in c["metadata"].get("tags", [])]
    assert [c["source"] for c in api] == ["show_doc(double)"]
    assert len(api[0]["outputs"]) == 1 # the entry alone, not what importing the package printed
    md = "".join(api[0]["outputs"][0]["data"]["text/markdown"])
    assert "### double" in md and "a number" in md and "Twice" in md
    srcs = [c["source"] for c in cells]
    assert not any("secret = 41" in s or "def double" in s for s in srcs) # hidden and exported cells are not shown
    run = next(c for c in cells if c["source"].startswith("print("))
    assert [o.get("text") or o["data"]["text/plain"] for o in run["outputs"]] == [["loaded\n"], ["82"]]
    slow = srcs.index("raise RuntimeError('a slow cell must not run')")
    assert cells[slow]["outputs"] == [] and "#| slow" in cells[slow + 1]["source"]
    assert next(c for c in cells if "eval: false cell" in c["source"])["outputs"] == []
    widget = cells[-1]["outputs"]
    assert "Interactive widget" in "".join(widget[0]["data"]["text/markdown"]) and "image/png" in widget[1]["data"]
    assert all(len(c["id"]) == 4 for c in cells)


def test_stage_names_the_failing_cell(tmp_path, monkeypatch):
    nb = new_nb([mk_cell("# Broken", "markdown"), mk_cell("x = 1"), mk_cell("undefined_name + x")],
                meta=dict(kernelspec=dict(name="python3", language="python", display_name="Python 3")))
    p = tmp_path / "01_broken.ipynb"
    p.write_text(json.dumps(nb, default=dict))
    monkeypatch.setattr(build, "PROC", tmp_path)
    monkeypatch.chdir(ROOT)
    with pytest.raises(RuntimeError, match=r"01_broken.ipynb: cell \d+ raised NameError: name 'undefined_name'"):
        build.stage(str(p), [])
    assert not list(tmp_path.glob("broken*"))


def _site(tmp_path: Path) -> tuple[Path, Path]:
    "A minimal site that passes the check: a page per chapter with its links, nav, API anchors and one figure each."
    from nbdev.config import get_config
    cfg = get_config()
    site, proc = tmp_path / "site", tmp_path / "proc"
    (site / "_images").mkdir(parents=True); proc.mkdir()
    (site / "_images" / "f.png").write_bytes(b"\x89PNG")
    nbs = build.chapters(ROOT / "nbs")
    pages = [build.page_name(p) for p in nbs]
    nav = "".join(f'<a class="reference internal" href="{p}.html">{p}</a>' for p in pages if p != "index")
    for nb, page in zip(nbs, pages):
        rel = nb.relative_to(ROOT).as_posix()
        ids = "".join(f'<span id="{a}"></span>' for a in check.documented(page))
        (site / f"{page}.html").write_text(
            f'<nav class="bd-docs-nav">{nav}</nav><article>{ids}'
            f'<a href="https://colab.research.google.com/github/lllite-nb/lllite-nb/blob/{cfg.branch}/{rel}">c</a>'
            f'<a href="{cfg.git_url}/blob/{cfg.branch}/{rel}">s</a><img src="_images/f.png"></article>')
        (proc / f"{page}.ipynb").write_text(json.dumps(dict(cells=[dict(cell_type="code", metadata={}, outputs=[
            dict(output_type="display_data", data={"image/png": "x"}, metadata={})])])))
    return site, proc


def test_check_passes_a_good_site_and_names_each_problem(tmp_path):
    site, proc = _site(tmp_path)
    assert check.check(site, proc) == []
    pages = [build.page_name(p) for p in build.chapters(ROOT / "nbs")]
    last = pages[-1]
    (site / f"{pages[1]}.html").unlink()
    (site / "_images" / "f.png").write_bytes(b"")
    html = (site / f"{last}.html").read_text()
    html = html.replace("https://colab.research.google.com/", "https://example.org/")
    html = html.replace("</article>", '<div class="output traceback">Traceback (most recent call last)</div>'
                                      f'<a href="#no-such-anchor">x</a><a href="{pages[2]}.html#nope">y</a><p>(\u2013debug: the traceback)</p></article>')
    (site / f"{last}.html").write_text(html)
    idx = (site / "index.html").read_text()
    a, b = f'href="{pages[2]}.html">{pages[2]}</a>', f'href="{pages[3]}.html">{pages[3]}</a>'
    (site / "index.html").write_text(idx.replace(a, "@").replace(b, a).replace("@", b)) # two chapters swapped in the nav
    probs = check.check(site, proc)
    want = [f"no page {pages[1]}.html",
            f"{last}.html: no link to https://colab.research.google.com/",
            f"{last}.html: image _images/f.png is missing or empty",
            f"{last}.html: error outputs on the page (output traceback)",
            f"{last}.html: the page shows a traceback",
            f"{last}.html: link #no-such-anchor: no anchor #no-such-anchor on {last}.html",
            f"{last}.html: link {pages[2]}.html#nope: no anchor #nope on {pages[2]}.html",
            f"{last}.html: flags typeset as dashes: \u2013debug",
            "index.html: navigation order"]
    for w in want: assert any(w in p for p in probs), (w, probs)
    (proc / f"{pages[2]}.ipynb").write_text(json.dumps(dict(cells=[dict(cell_type="code", metadata={}, outputs=[
        dict(output_type="display_data", data={"image/png": "x"}, metadata={})] * 2)])))
    assert any(f"{pages[2]}.html: 2 figures in the notebook, 1 images on the page" in p for p in check.check(site, proc))


HTML_TAGS = ("a", "br", "img", "div", "span", "sub", "sup", "details", "summary", "b", "i", "em", "strong", "code", "p")

def bare_tags(md: str) -> list:
    "Words in angle brackets outside code in markdown: a renderer takes them for HTML tags and drops them."
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", md, flags=re.S))
    return [m.group() for m in re.finditer(r"</?([A-Za-z][\w-]*)[^<>\n]*>", prose) if m.group(1).lower() not in HTML_TAGS]


def test_prose_has_no_bare_angle_brackets():
    assert bare_tags('says "no space left on <folder>"; `x <y>` and <br> stay') == ["<folder>"]
    assert bare_tags("```\n<kept>\n```\na <b>bold</b> <name>-state") == ["<name>"]
    found = {(p.name, t) for p in [*sorted((ROOT / "nbs").glob("*.ipynb"))] for c in json.loads(p.read_text())["cells"]
             if c["cell_type"] == "markdown" for t in bare_tags("".join(c["source"]))}
    found |= {("README.md", t) for t in bare_tags((ROOT / "README.md").read_text())}
    assert not found, f"write these in backticks, or the page drops them: {sorted(found)}"
