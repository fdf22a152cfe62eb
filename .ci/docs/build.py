"""Build the documentation site: every chapter in nbs/ executed and rendered into _docs/.

Stage 1 (this file): nbdev's own notebook processors (`nbdev.processors.FilterDefaults`: front matter,
`show_doc` for every exported name, `#| hide` / `#| export` handling, doc links) with one change: instead of
running only the cells that `show_doc` needs, every code cell runs in one shell per notebook, as `nbdev_test`
runs it (cells flagged with settings.ini's `tst_flags` and `#| eval: false` cells are shown, not run). The
processed notebooks, with their outputs, go to `_proc/`, named as nbdev names pages (`00_module` -> module).
Stage 2: Sphinx with MyST-NB renders `_proc/` into `_docs/` without executing anything again.

Nothing here names a chapter: the pages and their order come from the files in nbs/ (sorted, index first).
Usage: python .ci/docs/build.py [--only 00_module 06_widgets] [--workers 2] [--no-render]
"""
from __future__ import annotations

import argparse, base64, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from execnb.nbio import read_nb
from execnb.shell import CaptureShell
from fastcore.xtras import working_directory
from nbdev.config import get_config
from nbdev.doclinks import _nbpath2html
from nbdev.frontmatter import FrontmatterProc
from nbdev.process import NBProcessor
from nbdev.processors import FilterDefaults, exec_show_docs

ROOT = Path(__file__).resolve().parents[2]
PROC, SITE = ROOT / "_proc", ROOT / "_docs"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class DocsError(Exception): "A chapter that does not build: names the notebook and the cell."


def chapters(nbs_path: Path | None = None) -> list[Path]:
    "The chapters in reading order: nbs/*.ipynb sorted by name, the index first, scratch notebooks (`_*`) left out."
    nbs = sorted(p for p in Path(nbs_path or get_config().nbs_path).glob("*.ipynb") if not p.name.startswith("_"))
    return sorted(nbs, key=lambda p: p.stem != "index")


def title(nb: Path) -> str:
    "A chapter's title, as nbdev's front matter reads it (the notebook's `# Title` cell)."
    return NBProcessor(nb, FrontmatterProc, process=True).nb.frontmatter_.get("title", nb.stem)


def page_name(nb: Path) -> str:
    "The page a notebook becomes, as nbdev names it (`00a_models.ipynb` -> `models`), so nbdev's doc links resolve."
    return _nbpath2html(nb).stem


def skipped_flag(cell, flags: set) -> str | None:
    "Why a code cell is not run, as `nbdev_test` decides: the export call, 'eval: false', a test flag; None: it runs."
    if "nbdev_export" + "(" in cell.source: return "nbdev_export"
    d = getattr(cell, "directives_", {}) or {}
    if d.get("eval:", [""])[0].lower() == "false": return "eval: false"
    return next(iter(sorted(flags & d.keys())), None)


def widget_snapshot(out: dict) -> list[dict]:
    "Outputs for a static page in place of a widget view: a note, then every PNG the widget shows as it was left."
    from ipywidgets.widgets.widget import _instances
    w, seen, pngs = _instances.get(out["data"][WIDGET_MIME]["model_id"]), set(), []
    def walk(x):
        if x is None or id(x) in seen: return
        seen.add(id(x))
        if type(x).__name__ == "Image" and getattr(x, "format", "") == "png" and bytes(x.value or b""): pngs.append(bytes(x.value))
        for c in getattr(x, "children", ()) or (): walk(c)
    walk(w)
    note = ("*Interactive widget: it needs a running Python kernel (open this chapter in Jupyter or Colab). "
            + ("Below, what it showed when this page was built.*" if pngs else "*"))
    res = [dict(output_type="display_data", metadata={}, data={"text/markdown": [note]})]
    res += [dict(output_type="display_data", metadata={},
                 data={"image/png": base64.b64encode(p).decode() + "\n", "text/plain": ["<widget image>"]}) for p in pngs]
    return res


_FALLBACK_DOC = """
def _docs_fallback_doc(sym):
    "show_doc's entry for a name whose annotations cannot be evaluated: signature as written, then the docstring."
    import inspect
    from IPython.display import Markdown
    nm = getattr(sym, "__qualname__", getattr(sym, "__name__", str(sym)))
    try: sig = str(inspect.signature(sym))
    except (TypeError, ValueError): sig = "(...)"
    doc = inspect.getdoc(sym) or ""
    return Markdown(f"### {nm}\\n\\n```python\\n{nm}{sig}\\n```\\n\\n*{doc}*")
"""


class exec_all(exec_show_docs):
    "Run every code cell in one shell (nbdev's `exec_show_docs` runs only what `show_doc` needs); stop at an error."
    def begin(self):
        self.k = CaptureShell(self.nb.path_)
        self.k.run_cell("from nbdev.showdoc import show_doc")
        self.k.run_cell(_FALLBACK_DOC)
        self.flags = set(get_config().get("tst_flags", "").split())

    def __call__(self, cell):
        if cell.cell_type != "code": return
        why = skipped_flag(cell, self.flags)
        if why:
            if why in self.flags: cell.skipped_ = why # the page says it was not run
            return
        self.k.cell(cell)
        if self.k.exc and getattr(cell, "has_sd", False): # an added show_doc(x) that raised: the fallback entry
            src, cell.source = cell.source, cell.source.replace("show_doc(", "_docs_fallback_doc(", 1)
            self.k.cell(cell)
            cell.source = src
        if self.k.exc:
            raise DocsError(f"{self.nb.path_.name}: cell {cell.idx_} raised {type(self.k.exc).__name__}: {self.k.exc}\n"
                            f"---\n{cell.source}\n---") from self.k.exc
        outs = []
        for o in cell.get("outputs", []):
            outs += widget_snapshot(o) if WIDGET_MIME in o.get("data", {}) else [o]
        if "outputs" in cell: cell.outputs = outs


class DocsFilter(FilterDefaults):
    "nbdev's processors for docs, with `exec_all` in place of `exec_show_docs`."
    def base_procs(self): return [exec_all if p is exec_show_docs else p for p in super().base_procs()]


# ---------------------------------------------------------------- nbdev's Quarto cell options -> MyST-NB
_QUARTO = re.compile(r"^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$")
_TAGS = {("echo", "false"): "remove-input", ("output", "false"): "remove-output", ("include", "false"): "remove-cell",
         ("code-fold", "true"): "hide-input", ("code-fold", "show"): "hide-input"}
_ANSI = re.compile(r"\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])")
_BAR = re.compile(r"^(.*?):?\s*\d+%\|.*?\|\s*(\d+)/(\d+)")


def terminal_text(s: str) -> str:
    """A stream as a terminal leaves it: a carriage return rewrites its line. Interleaved progress bars (a bar
    inside a bar) leave a line per state: an unfinished state is dropped when the same bar (description and
    total) shows again further down."""
    lines = []
    for line in _ANSI.sub("", s).split("\n"):
        parts = [p for p in line.split("\r") if p]
        lines.append(parts[-1] if parts else "")
    bars = [_BAR.match(l) for l in lines]
    def superseded(i):
        m = bars[i]
        if m is None or int(m.group(2)) >= int(m.group(3)): return False
        return any(b is not None and (b.group(1), b.group(3)) == (m.group(1), m.group(3)) for b in bars[i + 1:])
    return "\n".join(l for i, l in enumerate(lines) if not superseded(i))


_FENCE = re.compile(r"(```.*?```)", re.DOTALL)
_MDLINK = re.compile(r"\[(`[^`\]]+`)\]\([^)\s]+\)")


def unlink_code(md: str) -> str:
    "nbdev links names line by line, also inside show_doc's fenced signature, where a link shows as raw text: undo that."
    return _FENCE.sub(lambda m: _MDLINK.sub(r"\1", m.group(1)), md)


def small_image_2x(o: dict, below: int = 256) -> dict:
    "A raster output narrower than `below` px with no size of its own (the tiny model's 128 px pictures) shown twice as wide."
    d, md = o.get("data", {}), dict(o.get("metadata") or {})
    mime = next((m for m in ("image/png", "image/jpeg") if m in d), None)
    if mime is None or md.get(mime): return o
    import io
    from PIL import Image
    raw = "".join(d[mime]) if isinstance(d[mime], list) else d[mime]
    w, h = Image.open(io.BytesIO(base64.b64decode(raw))).size
    if w >= below: return o
    return dict(o, metadata=dict(md, **{mime: {"width": 2 * w, "height": 2 * h}}))


def myst_cell(cell) -> dict:
    "A processed code cell as MyST-NB reads it: Quarto options become tags, streams are merged and settled."
    src, tags = cell.source.splitlines(), []
    while src and _QUARTO.match(src[0]):
        k, v = _QUARTO.match(src.pop(0)).groups()
        if (k, v.strip('"').lower()) in _TAGS: tags.append(_TAGS[k, v.strip('"').lower()])
    outs = []
    for o in cell.get("outputs", []):
        o = dict(o)
        if o["output_type"] == "error": raise DocsError(f"cell {cell.idx_} kept an error output: {o.get('ename')}")
        if o["output_type"] == "stream":
            text = "".join(o["text"])
            if outs and outs[-1]["output_type"] == "stream" and outs[-1]["name"] == o["name"]:
                text = "".join(outs.pop()["text"]) + text
            text = terminal_text(text)
            if text.strip(): outs.append(dict(output_type="stream", name=o["name"], text=text.splitlines(True)))
            continue
        outs.append(small_image_2x(o))
    source = "\n".join(src).strip()
    if source.startswith("show_doc("): # nbdev's API entry: its rule above becomes the cell's border (CSS)
        tags.append("api")
        # only the entry itself: what importing the package printed on the way (library warnings) is not part of it
        outs = [o for o in outs if "text/markdown" in o.get("data", {})]
        # nbdev links `Cls.method` to #cls.method; the heading's own id drops the dot, so the entry carries that anchor
        name = re.match(r"show_doc\(\s*([\w.]+)", source)
        anchor = f'<span id="{name.group(1).lower()}"></span>\n\n' if name and "." in name.group(1) else ""
        for o in outs:
            md = re.sub(r"^\s*---\s*\n", "", "".join(o["data"]["text/markdown"]))
            o["data"] = dict(o["data"], **{"text/markdown": anchor + md})
    md = dict(tags=tags) if tags else {}
    return dict(cell_type="code", execution_count=None, metadata=md, outputs=outs, source=source)


def page_header(fm: dict, nb: Path, cfg) -> str:
    "Title, summary and the two links every chapter page carries: Open in Colab and the source notebook."
    rel = f"{cfg.nbs_path.relative_to(cfg.config_path).as_posix()}/{nb.name}" # where the notebook lives on GitHub
    user_repo = cfg.git_url.rstrip("/").split("github.com/")[-1]
    colab = f"https://colab.research.google.com/github/{user_repo}/blob/{cfg.branch}/{rel}"
    src = f"{cfg.git_url.rstrip('/')}/blob/{cfg.branch}/{rel}"
    head = f"# {fm.get('title', nb.stem)}\n\n"
    if fm.get("description"): head += f"{{.lead}}\n{fm['description']}\n\n"
    return head + (f"{{.chapter-links}}\n[Open in Colab]({colab}){{.colab-link}} "
                   f"[Source notebook: `{rel}`]({src}){{.source-link}}\n")


def to_myst(nb, path: Path, cfg, pages: list[tuple]) -> dict:
    "The processed notebook as plain nbformat for MyST-NB: header cell, tagged code cells, site-relative doc links."
    base = f"{cfg.doc_host.rstrip('/')}{cfg.doc_baseurl.rstrip('/')}/"
    def rel_links(s: str) -> str: return s.replace(f"]({base}", "](")
    cells = []
    for c in nb.cells:
        if c.cell_type == "raw" and c.source.startswith("---"):
            cells.append(dict(cell_type="markdown", metadata={}, source=page_header(nb.frontmatter_, path, cfg)))
        elif c.cell_type == "markdown":
            if "WARNING: THIS FILE WAS AUTOGENERATED" in c.source: continue
            cells.append(dict(cell_type="markdown", metadata={}, source=rel_links(c.source)))
        elif c.cell_type == "code":
            mc = myst_cell(c)
            if not mc["source"] and not mc["outputs"]: continue
            for o in mc["outputs"]:
                if "text/markdown" in o.get("data", {}):
                    o["data"]["text/markdown"] = unlink_code(rel_links("".join(o["data"]["text/markdown"])))
            cells.append(mc)
            if getattr(c, "skipped_", None):
                cells.append(dict(cell_type="markdown", metadata=dict(tags=["skipped-note"]),
                                  source=f"{{.skipped}}\n*Not run when this page was built (`#| {c.skipped_}`): "
                                         f"run the notebook to see its output.*"))
    if path.stem == "index":
        # the number of the notebook before its title (a toctree title is plain text: no `code` marks)
        toc = "\n".join(f"{stem.split('_')[0]} · {re.sub(r'[`*]', '', title)} <{page}>" for stem, page, title in pages if page != "index")
        cells.append(dict(cell_type="markdown", metadata={}, source=f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toc}\n```"))
    for i, c in enumerate(cells): c["id"] = f"c{i:03d}" # stable ids, as nbformat 4.5 wants
    meta = {k: v for k, v in dict(nb.metadata).items() if k in ("kernelspec", "language_info")}
    return dict(nbformat=4, nbformat_minor=5, metadata=meta, cells=cells)


def stage(nb_path: str, pages: list[tuple]) -> tuple[str, float]:
    "Process and execute one notebook into `_proc/<page>.ipynb`; returns (page, seconds)."
    try: return _stage(nb_path, pages)
    except Exception as e: raise RuntimeError(f"{type(e).__name__}: {e}") from None # picklable across processes


def _stage(nb_path: str, pages: list[tuple]) -> tuple[str, float]:
    t0, path, cfg = time.time(), Path(nb_path), get_config()
    os.environ["IN_TEST"] = "1" # as under nbdev_test: nbdev skips its own side effects (e.g. _modidx writes)
    with working_directory(path.parent):
        nb = read_nb(path)
        nb.path_ = path
        NBProcessor(path, DocsFilter().procs(), nb=nb, process=True)
    out = PROC / f"{page_name(path)}.ipynb"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_myst(nb, path, cfg, pages), indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(out)
    return out.stem, time.time() - t0


def render(quiet: bool = True) -> None:
    "Sphinx + MyST-NB: `_proc/` -> `_docs/`, nothing executed again. Built beside, then swapped in whole."
    out = PROC / ".site" # MyST-NB keeps its output files in <out>/../jupyter_execute: inside _proc/, not the repo
    if out.exists(): shutil.rmtree(out)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(ROOT / ".ci/docs"), "-d", str(PROC / ".doctrees"),
           str(PROC), str(out)] + (["-q"] if quiet else [])
    subprocess.run(cmd, check=True, cwd=ROOT)
    (out / ".nojekyll").touch() # GitHub Pages: serve _static/ and _images/ as they are
    fix_anchors(out)
    if SITE.exists(): shutil.rmtree(SITE)
    shutil.move(out, SITE)


_ID = re.compile(r'\sid="([^"]+)"')
_HREF = re.compile(r'href="([\w.-]*\.html)?#([^"]+)"')


def fix_anchors(site: Path = SITE) -> int:
    """nbdev links every backticked name to `page.html#name`, also names with no show_doc entry (private helpers, a
    class's own methods). Such a link goes to the class's entry (`#cls.method` -> `#cls`), else to the page; returns
    how many links changed."""
    pages = {f.name: f for f in site.glob("*.html")}
    ids = {n: set(_ID.findall(f.read_text(encoding="utf-8"))) for n, f in pages.items()}
    changed = 0
    for name, f in pages.items():
        def repl(m):
            nonlocal changed
            target, frag = m.group(1) or name, m.group(2)
            if target not in ids or frag in ids[target]: return m.group(0)
            changed += 1
            head = frag.split(".")[0]
            if head in ids[target]: return f'href="{m.group(1) or ""}#{head}"'
            return f'href="{target}"'
        html = f.read_text(encoding="utf-8")
        new = _HREF.sub(repl, html)
        if new != html: f.write_text(new, encoding="utf-8")
    return changed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", default=None, help="notebook stems to (re)stage; the others keep their _proc/ page")
    ap.add_argument("--workers", type=int, default=int(os.environ.get("DOCS_WORKERS", "1")), help="notebooks run at once")
    ap.add_argument("--no-render", action="store_true", help="stage 1 only")
    a = ap.parse_args(argv)
    os.chdir(ROOT)
    nbs = chapters()
    names = [page_name(p) for p in nbs]
    pages = [(p.stem, page_name(p), title(p)) for p in nbs]
    if len(set(names)) != len(names): sys.exit(f"docs: two notebooks map to the same page: {names}")
    if {"search", "genindex"} & set(names): sys.exit(f"docs: a chapter may not be named search or genindex (Sphinx's pages): {names}")
    todo = [p for p in nbs if a.only is None or p.stem in a.only]
    if a.only and len(todo) != len(a.only): sys.exit(f"docs: --only names no notebook in {[p.stem for p in nbs]}: {a.only}")
    PROC.mkdir(exist_ok=True)
    if a.only is None:
        for stale in PROC.glob("*.ipynb"):
            if stale.stem not in names: stale.unlink()
    img = get_config().nbs_path / "images" # pictures the chapters show from files
    if img.is_dir(): shutil.copytree(img, PROC / "images", dirs_exist_ok=True)
    t0, failed = time.time(), []
    # one fresh process per notebook (max_tasks_per_child=1): each chapter runs alone, as under nbdev_test
    with ProcessPoolExecutor(max_workers=max(1, a.workers), max_tasks_per_child=1) as ex:
        futs = {p.stem: ex.submit(stage, str(p), pages) for p in todo}
        for stem, f in futs.items():
            try: page, s = f.result(); print(f"docs: {stem} -> _proc/{page}.ipynb ({s:.0f} s)", flush=True)
            except Exception as e: failed.append(stem); print(f"docs: {stem} FAILED\n{e}", file=sys.stderr, flush=True)
    if failed: sys.exit(f"docs: {len(failed)} notebook(s) failed: {' '.join(failed)}")
    print(f"docs: executed {len(todo)} notebook(s) in {time.time() - t0:.0f} s", flush=True)
    if not a.no_render:
        t1 = time.time(); render(); print(f"docs: rendered {SITE.relative_to(ROOT)}/ in {time.time() - t1:.0f} s")


if __name__ == "__main__": main()
