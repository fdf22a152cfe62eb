"""Generation speed on the tiny model, stock pipeline against LLLitePipeline (run by hand: `python benchmarks/bench_inference.py`).

One image per call at `--size` pixels, `--steps` Euler steps with classifier-free guidance (UNet batch 2), output
decoded by the VAE. The LLLite side has a c32/m64 network (kohya's default dims) with random `up` weights, so every
module computes its residual. Runs are interleaved (stock, LLLite, stock, ...) so drifting machine load hits both;
we print medians, the ratio and the spread. Timings are not asserted anywhere.
"""
import argparse, statistics, time

import torch
from torch import nn

from lllite_nb.inference import LLLitePipeline
from lllite_nb.inject import ControlNetLLLite
from lllite_nb.models import load_pipeline


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128); p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5); p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    stock = load_pipeline("tiny"); stock.set_progress_bar_config(disable=True)
    pipe = LLLitePipeline.from_pipe(stock); pipe.set_progress_bar_config(disable=True)
    net = pipe.add_lllite(ControlNetLLLite(pipe.unet))
    for m in net.lllite_modules.values(): nn.init.normal_(m.up[0].weight, std=0.01)
    guide = torch.rand(3, a.size, a.size)
    kw = dict(height=a.size, width=a.size, num_inference_steps=a.steps, output_type="np")
    fns = {"stock": lambda: stock("a red circle", generator=torch.Generator().manual_seed(0), **kw),
           "lllite": lambda: pipe("a red circle", image=guide, generator=torch.Generator().manual_seed(0), **kw)}
    for f in fns.values(): f()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(a.repeats):
        for k, f in fns.items():
            t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"tiny model, {a.size}x{a.size}, {a.steps} steps, CFG, {torch.get_num_threads()} thread(s), {a.repeats} repeats")
    for k, v in times.items():
        print(f"  {k:6s} median {med[k]:.2f} s/image ({a.steps / med[k]:.1f} steps/s), spread {min(v):.2f}..{max(v):.2f} s")
    print(f"  LLLite / stock: {med['lllite'] / med['stock']:.3f}")


if __name__ == "__main__":
    main()
