"""Seconds per Run of the interactive-generation widget with its defaults (run by hand: `python benchmarks/bench_widgets.py`).

The widget of `06_widgets` with the shipped tiny model and Canny network, the first sample guide and its caption,
128 px, 20 steps. A first Run draws two pictures (with control, and the same seed without, which is then cached);
a Run after changing only strength or window draws one. Thread counts are interleaved (1, 2, 1, 2, ...) so
drifting machine load hits both; we print medians and the spread. Timings are not asserted anywhere.
"""
import argparse, statistics, time

import torch

from lllite_nb.demo import DEMO_LLLITE
from lllite_nb.inference import LLLitePipeline
from lllite_nb.models import load_pipeline
from lllite_nb.widgets import InferenceWidget, sample_guides


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3); p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = p.parse_args(argv)
    pipe = LLLitePipeline.from_pipe(load_pipeline("tiny")); pipe.set_progress_bar_config(disable=True)
    pipe.add_lllite(DEMO_LLLITE)
    w = InferenceWidget(pipe, sample_guides())
    def first(): w.cache.clear(); w.run()     # controlled + uncontrolled
    def again(): w.run()                      # controlled only; the uncontrolled picture is cached
    first()  # warm-up
    times = {(n, k): [] for n in a.threads for k in ("first", "again")}
    for _ in range(a.repeats):
        for n in a.threads:
            torch.set_num_threads(n)
            for k, f in (("first", first), ("again", again)):
                t = time.perf_counter(); f(); times[n, k].append(time.perf_counter() - t)
    print(f"InferenceWidget defaults: {w.size} px, {w.steps.value} steps, guide {w.guide.value!r}, {a.repeats} repeats")
    for (n, k), v in times.items():
        print(f"  {n} thread(s), {k:5s} Run: median {statistics.median(v):.2f} s, spread {min(v):.2f}..{max(v):.2f} s")


if __name__ == "__main__":
    main()
