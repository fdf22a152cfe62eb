"""Check the built site in _docs/ (after `make docs`): one page per chapter in nbs/, in chapter order, each with its
Colab and source-notebook links; every figure of the executed notebook present as an image file; no error output
or traceback on any page; every exported name documented (show_doc) on its chapter's page; every link between pages
landing on a page and an anchor that exist. Prints one line per problem and exits 1 if there is any."""
from __future__ import annotations

import ast, json, re, sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

sys.path.insert(0, str(Path(__file__).parent))
from build import PROC, ROOT, SITE, chapters, page_name # noqa: E402

IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


class Page(HTMLParser):
    "What the check needs from one HTML page: ids, links, images, sidebar order, error outputs, visible text."
    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.ids, self.links, self.imgs, self.nav, self.errors, self.text = set(), [], [], [], [], []
        self._in_nav = 0
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if "id" in a: self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
            if self._in_nav and "reference" in cls and "internal" in cls: self.nav.append(a["href"].split("#")[0])
        if tag == "img": self.imgs.append(a.get("src", ""))
        if tag == "nav" and "bd-docs-nav" in cls: self._in_nav = 1
        elif tag == "nav" and self._in_nav: self._in_nav += 1
        if tag == "div" and "output" in cls and ({"error", "traceback"} & set(cls)): self.errors.append(" ".join(cls))

    def handle_endtag(self, tag):
        if tag == "nav" and self._in_nav: self._in_nav -= 1

    def handle_data(self, data): self.text.append(data)


def figures(page: str, proc: Path = PROC) -> int:
    "Image outputs in the executed notebook behind `page`."
    nb = json.loads((proc / f"{page}.ipynb").read_text(encoding="utf-8"))
    return sum(1 for c in nb["cells"] for o in c.get("outputs", []) if set(IMAGE_MIMES) & set(o.get("data", {})))


def documented(page: str) -> set[str]:
    "Anchors of the names that a module exports (its `__all__`) and nbdev's index (<lib>/_modidx.py) places on `page`."
    from nbdev.config import get_config
    lib = get_config().lib_path
    ns = {}
    exec((lib / "_modidx.py").read_text(encoding="utf-8"), ns) # read as data: importing the package would import torch
    out = set()
    for mod, syms in ns["d"]["syms"].items():
        f = lib / f"{mod.split('.', 1)[-1].replace('.', '/')}.py"
        if not f.exists(): continue
        tree = ast.parse(f.read_text(encoding="utf-8"))
        public = {n for node in tree.body if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets)
                  for n in ast.literal_eval(node.value)}
        for name, (url, _) in syms.items():
            html, _, anchor = url.partition("#")
            if Path(html).stem == page and name.rsplit(".", 1)[-1] in public and name.count(".") == mod.count(".") + 1:
                out.add(anchor)
    return out


def empty_api_entries(page: str, proc: Path = PROC) -> int:
    "show_doc cells of the executed notebook that produced no entry."
    nb = json.loads((proc / f"{page}.ipynb").read_text(encoding="utf-8"))
    return sum(1 for c in nb["cells"] if "api" in c.get("metadata", {}).get("tags", [])
               and not any("text/markdown" in o.get("data", {}) for o in c.get("outputs", [])))


def check(site: Path = SITE, proc: Path = PROC) -> list[str]:
    "Every problem found in the built `site` (and the executed notebooks in `proc`), one line each."
    from nbdev.config import get_config
    cfg, problems = get_config(), []
    nbs = chapters()
    pages = [page_name(p) for p in nbs]
    user_repo = cfg.git_url.rstrip("/").split("github.com/")[-1]
    if not site.is_dir(): return [f"{site} does not exist: run `make docs` first"]
    parsed = {}
    for nb, page in zip(nbs, pages):
        f = site / f"{page}.html"
        if not f.exists(): problems.append(f"{nb.name}: no page {f.name}"); continue
        p = parsed[page] = Page(f)
        rel = nb.relative_to(ROOT).as_posix()
        for want in (f"https://colab.research.google.com/github/{user_repo}/blob/{cfg.branch}/{rel}",
                     f"{cfg.git_url.rstrip('/')}/blob/{cfg.branch}/{rel}"):
            if want not in p.links: problems.append(f"{page}.html: no link to {want}")
        n_fig = figures(page, proc)
        out_imgs = [s for s in p.imgs if s.startswith("_images/")]
        if len(out_imgs) < n_fig: problems.append(f"{page}.html: {n_fig} figures in the notebook, {len(out_imgs)} images on the page")
        for s in p.imgs:
            if s.startswith(("http:", "https:", "data:")): continue
            img = site / unquote(urlparse(s).path)
            if not img.is_file() or img.stat().st_size == 0: problems.append(f"{page}.html: image {s} is missing or empty")
        if p.errors: problems.append(f"{page}.html: error outputs on the page ({', '.join(p.errors[:3])})")
        text = "".join(p.text)
        for bad in ("Traceback (most recent call last)", "---------------------------------------------------------------------------"):
            if bad in text: problems.append(f"{page}.html: the page shows a traceback ({bad[:40]!r})")
        if flags := re.findall(r"[\u2013\u2014][a-z]\w*", text): problems.append(f"{page}.html: flags typeset as dashes: {', '.join(sorted(set(flags))[:5])}")
        missing = sorted(a for a in documented(page) if a not in p.ids)
        if missing: problems.append(f"{page}.html: exported names without their show_doc entry: {', '.join(missing[:8])}")
        if empty_api_entries(page, proc): problems.append(f"{page}.html: {empty_api_entries(page, proc)} show_doc entries came out empty")
    # the chapters in order in the navigation, the index first
    if "index" in parsed:
        nav = [Path(h).stem for h in parsed["index"].nav if h and not h.startswith("#")]
        nav = [n for n in dict.fromkeys(nav) if n in pages]
        want = [p for p in pages if p != "index"]
        if [n for n in nav if n != "index"] != want: problems.append(f"index.html: navigation order {nav}, expected {want}")
    # links between pages land on a page and an anchor that exist
    for page, p in parsed.items():
        for h in p.links:
            u = urlparse(h)
            if u.scheme or u.netloc or not (u.path.endswith(".html") or (not u.path and u.fragment)): continue
            target = Path(u.path).stem if u.path else page
            if target not in parsed and not (site / u.path).exists(): problems.append(f"{page}.html: link to missing page {h}"); continue
            if u.fragment and target in parsed and unquote(u.fragment) not in parsed[target].ids:
                problems.append(f"{page}.html: link {h}: no anchor #{u.fragment} on {target}.html")
    extra = sorted({f.stem for f in site.glob("*.html")} - set(pages) - {"genindex", "search", "py-modindex"})
    if extra: problems.append(f"_docs/ has pages of no chapter in nbs/: {extra}")
    return problems


def main():
    problems = check()
    for p in problems: print(f"docs-check: {p}")
    n = len(chapters())
    if problems: sys.exit(f"docs-check: {len(problems)} problem(s) in {SITE.relative_to(ROOT)}/")
    print(f"docs-check: {n} chapter pages in order, with their links, figures and API entries; no error output")


if __name__ == "__main__": main()
