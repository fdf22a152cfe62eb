# Sphinx configuration for the documentation site. `.ci/docs/build.py` stages the executed notebooks into _proc/
# and runs `sphinx-build -c .ci/docs _proc _docs`; everything project-specific comes from settings.ini.
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_cp = ConfigParser(delimiters=["="])
_cp.read(ROOT / "settings.ini", encoding="utf-8")
cfg = _cp["DEFAULT"]

project = cfg["repo"]
author = cfg["author"]
copyright = cfg["copyright"]
release = version = cfg["version"]
html_title = f"{cfg['repo']}"
html_baseurl = f"{cfg['doc_host'].rstrip('/')}{cfg['doc_baseurl'].rstrip('/')}/"

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = [".doctrees", ".site", "jupyter_execute", "**.ipynb_checkpoints", "*.tmp"]
source_suffix = {".ipynb": "myst-nb"}

# The notebooks arrive executed (build.py runs them as nbdev_test does); MyST-NB only renders.
nb_execution_mode = "off"
nb_merge_streams = True
nb_output_stderr = "show"
nb_render_markdown_format = "myst" # show_doc's output: headings, signatures, parameter tables
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
myst_enable_extensions = ["attrs_inline", "attrs_block", "colon_fence", "dollarmath"]
myst_heading_anchors = 3
# Quotes and ellipses typeset, dashes not: "--debug" in prose is a flag, and "--" would become an en dash.
smartquotes_action = "qe"
# nbdev's doc links (`name` -> page.html#name) are plain URLs of the built site, not Sphinx cross-references
myst_all_links_external = True
# show_doc puts an H3 per name inside cell outputs; a page's own H2s come from its markdown: both are wanted.
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "myst.xref_missing"]

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["lllite.css"]
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
html_theme_options = {
    "repository_url": cfg["git_url"],
    "repository_branch": cfg["branch"],
    "path_to_docs": cfg["nbs_path"],
    "use_repository_button": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "navbar_persistent": [], # one search field, in the sidebar (the theme would add a second in a top bar)
}
