"""Start-up time: `import torch`, `import lllite_nb`, each chapter module and each command's --help (run by hand).

Every measurement is a fresh `python` process, timed from outside (wall clock, start to exit), with
OMP_NUM_THREADS=1 and HF_HUB_OFFLINE=1. The processes are interleaved in one loop (torch, lllite_nb, modules...,
commands..., then again), so drifting machine load hits all of them; a first round warms the disk cache and is
dropped. Printed: the median seconds and the median over rounds of each time divided by the same round's
`import torch`. `--root` picks the checkouts whose `lllite_nb` is imported (its folder is the processes' working
directory, so it wins over the installed package): `--root /path/to/old/checkout .` times older code beside this
one with the same libraries, interleaved in the same loop. The commands are the console scripts of the root's settings.ini, run as `python -c "from mod import
main; main()"` with `--help` (what the installed script does), and `python -m lllite_nb.world --help`.
Timings are not asserted anywhere.
"""
import argparse, configparser, json, os, statistics, subprocess, sys, time
from pathlib import Path


def commands(root: Path, modules: list | None = None) -> dict:
    "Label -> argv (after the interpreter) of every start-up to time, in the order they run each round."
    if modules is None: modules = sorted(p.stem for p in (root / "lllite_nb").glob("*.py") if not p.stem.startswith("_"))
    out = {"import torch": ["-c", "import torch"], "import lllite_nb": ["-c", "import lllite_nb"]}
    out |= {f"import lllite_nb.{m}": ["-c", f"import lllite_nb.{m}"] for m in modules}
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(root / "settings.ini", encoding="utf-8")
    for entry in cfg["DEFAULT"]["console_scripts"].split():
        name, target = entry.split("="); mod, fn = target.split(":")
        out[f"{name} --help"] = ["-c", f"import sys; sys.argv = [{name!r}, '--help']; from {mod} import {fn}; sys.exit({fn}())"]
    out["python -m lllite_nb.world --help"] = ["-m", "lllite_nb.world", "--help"]
    return out


def time_once(python: str, argv: list, root: Path) -> float:
    "Wall seconds of one fresh process; a failure stops the benchmark with its message."
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    t = time.perf_counter()
    r = subprocess.run([python, *argv], cwd=root, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0: sys.exit(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr[-1000:]}")
    return dt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, nargs="+", default=[Path(__file__).resolve().parents[1]],
                   help="checkouts whose lllite_nb is timed (several: interleaved in the same loop, one column each)")
    p.add_argument("--python", default=sys.executable, help="interpreter (its environment's libraries)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up round")
    p.add_argument("--modules", nargs="*", help="chapter modules to time (default: all of each root's)")
    p.add_argument("--json", type=Path, help="also write the raw times here")
    a = p.parse_args(argv)
    roots = [r.resolve() for r in a.root]
    cmds = {r: commands(r, a.modules) for r in roots}
    labels = list(dict.fromkeys(k for r in roots for k in cmds[r]))
    times = {r: {k: [] for k in cmds[r]} for r in roots}
    for n in range(a.rounds + 1):
        for k in labels:
            for r in roots:
                if k not in cmds[r]: continue
                dt = time_once(a.python, cmds[r][k], r)
                if n: times[r][k].append(dt)
        if n: print(f"round {n}/{a.rounds}: import torch " + ", ".join(f"{times[r]['import torch'][-1]:.2f}" for r in roots) + " s",
                    file=sys.stderr, flush=True)
    print(f"Start-up, {a.rounds} interleaved rounds, {os.cpu_count()} CPUs, {a.python}\n")
    print("| what | " + " | ".join(f"{r}: median s | × `import torch`" for r in roots) + " |")
    print("|---|" + "---|---|" * len(roots))
    for k in labels:
        cells = []
        for r in roots:
            v, base = times[r].get(k), times[r]["import torch"]
            cells += [f"{statistics.median(v):.2f}", f"{statistics.median(t / b for t, b in zip(v, base)):.2f}"] if v else ["-", "-"]
        print(f"| `{k}` | " + " | ".join(cells) + " |")
    if a.json: a.json.write_text(json.dumps({str(r): times[r] for r in roots}, indent=1))


if __name__ == "__main__":
    main()
