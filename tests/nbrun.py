"""Run one notebook as a person would with Run All, in a fresh IPython shell: `python nbrun.py NOTEBOOK`.

Cells flagged `#| slow`, `#| gpu` or `#| eval: false` are skipped (what CI cannot run). The shell is set up first;
after that the development packages (nbdev, execnb, pytest) look absent, as after a plain `pip install`:
importing one fails and `importlib.util.find_spec` finds none, so a chapter that needs one fails here.
Exits 1 at the first cell that raises, after printing its traceback."""
import json, re, sys, time
from pathlib import Path

from IPython.core.interactiveshell import InteractiveShell

DEV_ONLY = {"nbdev", "execnb", "pytest", "_pytest"}
SKIP_FLAGS = {"slow", "gpu"}


class Shell(InteractiveShell):
    "IPython without a terminal or a kernel; `%matplotlib inline` needs no event loop."
    def enable_gui(self, gui=None): pass


def directives(src: str) -> list:
    "The `#| ...` directives of a cell, e.g. ['hide', 'eval: false']."
    return [m.group(1).strip() for m in re.finditer(r"^#\|\s*(.+)$", src, re.M)]


def skipped(src: str) -> bool:
    "Is this cell one that CI skips (slow, gpu, eval: false)?"
    ds = directives(src)
    return any(d in SKIP_FLAGS for d in ds) or any(re.fullmatch(r"eval:\s*false", d, re.I) for d in ds)


def run(path: Path) -> int:
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    shell = Shell.instance()
    for m in [m for m in sys.modules if m.split(".")[0] in DEV_ONLY]: del sys.modules[m]
    sys.modules.update(dict.fromkeys(DEV_ONLY))  # None there: `import` fails and `find_spec` says absent, as if not installed
    t0 = time.perf_counter()
    for i, c in enumerate(cells):
        src = "".join(c["source"])
        if skipped(src): continue
        r = shell.run_cell(src, store_history=True)
        if not r.success:
            print(f"\n{path.name}: code cell {i} (id {c.get('id')}) raised:\n{src}", file=sys.stderr)
            return 1
    print(f"{path.name}: {len(cells)} code cells in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
