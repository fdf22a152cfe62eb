"""LLLite overhead at real SDXL shapes on CPU (run by hand: `make bench` or `python benchmarks/bench_module.py`).

1. Per module: forward+backward of one LLLiteModule (training setting: wrapped layer frozen, input needs grad,
   LLLite trainable) against the plain nn.Linear of the same shape, at SDXL's two target shapes
   (d=640, T=4096 and d=1280, T=1024: 1024 px, depth 2 and 3).
2. Whole UNet: one denoising step of a random real-size SDXL UNet (fp32, latent 32x32 = 256 px, batch 1, no grad)
   with and without a c32/m64 network applied (136 modules). Needs about 11 GB of RAM.

Runs are interleaved (A, B, A, B, ...) so drifting machine load hits both sides alike; we print medians, the ratio of
medians and the spread (min..max) so the noise is visible. Timings are not asserted anywhere.
"""
import argparse, statistics, time

CLOCK = time.perf_counter # wall clock; `--clock cpu` switches to this process's CPU time (steadier on a busy machine)

import torch
from torch import nn

from lllite_nb.inject import ControlNetLLLite
from lllite_nb.models import build_meta_unet, sdxl_unet_config
from lllite_nb.module import LLLiteModule


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict:
    "Time each callable `repeats` times, interleaved; returns name -> list of seconds."
    for _ in range(warmup):
        for f in fns.values(): f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = CLOCK(); f(); times[k].append(CLOCK() - t)
    return times

def report(title: str, times: dict, base: str, other: str) -> float:
    mb, mo = statistics.median(times[base]), statistics.median(times[other])
    spread = lambda v: f"{min(v) * 1e3:.1f}..{max(v) * 1e3:.1f} ms"
    print(f"{title}: {base} median {mb * 1e3:.2f} ms ({spread(times[base])}), {other} median {mo * 1e3:.2f} ms "
          f"({spread(times[other])}), ratio {mo / mb:.3f} (min-based {min(times[other]) / min(times[base]):.3f})")
    return mo / mb

def bench_module(d: int, tokens: int, depth: int, repeats: int) -> float:
    torch.manual_seed(0)
    lin = nn.Linear(d, d, bias=False).requires_grad_(False)
    mod = LLLiteModule(lin, depth, cond_emb_dim=32, network_dim=64)
    with torch.no_grad():
        for p in mod.parameters(): p.normal_(0, 0.02)
        side = int(tokens ** 0.5) * {2: 16, 3: 32}[depth]
        mod.set_cond_image(torch.rand(1, 3, side, side) * 2 - 1)
    x = torch.randn(1, tokens, d, requires_grad=True)
    g = torch.randn(1, tokens, d)
    def step(f):
        def run():
            x.grad = None; mod.zero_grad(set_to_none=True)
            f(x).backward(g)
        return run
    times = interleaved({"linear": step(lin), "lllite": step(mod)}, repeats, warmup=3)
    return report(f"module fwd+bwd d={d} T={tokens} (depth {depth})", times, "linear", "lllite")

def bench_unet(repeats: int) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        unet = build_meta_unet(sdxl_unet_config()).to_empty(device="cpu").eval()
        g = torch.Generator().manual_seed(0)
        for p in unet.parameters(): p.uniform_(-0.03, 0.03, generator=g)
        net = ControlNetLLLite(unet, cond_emb_dim=32, network_dim=64)
        for p in net.parameters(): p.uniform_(-0.03, 0.03, generator=g)
    print(f"built a random fp32 SDXL UNet ({sum(p.numel() for p in unet.parameters()) / 1e9:.2f} B params) "
          f"and a c32/m64 network ({sum(p.numel() for p in net.parameters()):,} params) in {time.perf_counter() - t0:.0f} s")
    lat, ctx = torch.randn(1, 4, 32, 32, generator=g), torch.randn(1, 77, 2048, generator=g)
    added = dict(text_embeds=torch.randn(1, 1280, generator=g), time_ids=torch.tensor([[256., 256, 0, 0, 256, 256]]))
    def step():
        with torch.no_grad(): unet(lat, 500, ctx, added_cond_kwargs=added)
    def plain():
        net.restore(); step()
    def lllite():
        net.apply_to(); step(); net.restore()
    with torch.no_grad(): net.set_cond_image(torch.rand(1, 3, 256, 256) * 2 - 1) # once per generation
    times = interleaved({"unet": plain, "unet+lllite": lllite}, repeats)
    ratio = report("SDXL UNet step, 256 px, batch 1, fp32", times, "unet", "unet+lllite")
    paired = [b / a for a, b in zip(times["unet"], times["unet+lllite"])]
    print(f"  paired ratios (each LLLite step / the plain step just before it): median {statistics.median(paired):.3f}, "
          f"range {min(paired):.3f}..{max(paired):.3f}")
    # Noise-free view: time spent inside the 136 residual computations during one step, as a share of that step.
    inside = []
    def timed(f):
        def run(x):
            t = CLOCK(); r = f(x); inside.append(CLOCK() - t); return r
        return run
    for m in net.lllite_modules.values(): m.residual = timed(m.residual)
    t = CLOCK(); lllite(); total = CLOCK() - t
    for m in net.lllite_modules.values(): del m.residual
    print(f"  inside one LLLite step: {len(inside)} residual calls took {sum(inside) * 1e3:.1f} ms of {total * 1e3:.0f} ms "
          f"({100 * sum(inside) / total:.2f}%; the {len(inside)} adds x + r are not included)")
    return ratio

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--module-repeats", type=int, default=30, help="timed repeats per module shape")
    ap.add_argument("--unet-repeats", type=int, default=5, help="timed UNet steps per side (each a few seconds)")
    ap.add_argument("--skip-unet", action="store_true", help="only the per-module benchmark (no 11 GB UNet)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); 1 is steadier on a busy machine")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: time.process_time, which ignores time the process waits for a core (use with --threads 1)")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.clock == "cpu": CLOCK = time.process_time
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.clock} clock")
    bench_module(640, 4096, 2, a.module_repeats)
    bench_module(1280, 1024, 3, a.module_repeats)
    if not a.skip_unet:
        r = bench_unet(a.unet_repeats)
        print(f"UNet step overhead ratio {r:.4f} (goal <= 1.015)")
