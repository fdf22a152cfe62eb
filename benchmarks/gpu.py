"""ControlNet-LLLite on a real-size SDXL UNet on one CUDA GPU: training step vs its floor, inference, torch.compile.

    python benchmarks/gpu.py                    # CUDA: SDXL UNet at 1024x1024 (latent 128), at most 8 minutes
    python benchmarks/gpu.py --smoke            # the same code at tiny shapes on the CPU (under 2 minutes)

--smoke differs only in what it is given: a tiny UNet of SDXL's layout (widths 32/64/128, one transformer block per
attention) at latent 8, the CPU, one warm-up and one timed run per variant, and torch.compile's "eager" backend
(dynamo traces and counts graph breaks; nothing is compiled). Its figures check the code, not the speed.

Nothing is downloaded: the UNet is built from SDXL's config (`sdxl_unet_config()`) with seeded random weights, and
latents, text embeddings, pooled embeddings, time ids and guides are random tensors of SDXL's shapes. The LLLite
is kohya's default size (c32/m64), fp32 while training.

Measured, each in this one process with the compared variants interleaved (A B A B ...), medians reported:
- training: the package's step (`LLLiteUNet` + `training_loss`, backward, gradient clipping, AdamW; a grad scaler
  under fp16) at batch 1, 2, 4, 8, without and with gradient checkpointing, under bf16 and fp16 autocast (UNet
  weights in that dtype, LLLite weights fp32), beside its floor: the same `training_loss` through the bare UNet,
  backward included, with the LLLite removed. The LLLite's backward has to run from the loss down to the first
  hooked layer and no further (the UNet is frozen, the latents need no gradient), so the default floor (`--floor
  first-hooked`) makes the input of that layer's attention require a gradient; `--floor latents` instead makes
  the latents require it (a floor that also back-propagates the UNet's first level, so a lower ratio).
- peak memory per phase (`torch.cuda.max_memory_allocated` / `max_memory_reserved`, reset before a run that follows
  `torch.cuda.empty_cache()`; on the CPU the process's peak RSS);
- inference: one CFG denoising step (UNet at batch 2 + the guidance combination) without and with the LLLite
  (network in the UNet's dtype, as `LLLitePipeline` runs it), and the conditioning embedding, computed once per
  generation, timed on its own;
- torch.compile of the UNet with the LLLite hooked in (in a child process with a hard time limit): whether it runs
  and matches eager, graphs and graph breaks (dynamo's counters), compile time, speed-up over eager, for the
  inference step and for a training step (batch 1, bf16, no checkpointing).
Out of memory is recorded as "OOM"; configurations that the time budget cannot fit are "skipped (time)".
Output: a markdown table on stdout, JSON at --out (written after every configuration, "complete" at the end).
"""
import argparse, gc, json, math, os, platform, signal, statistics, subprocess, sys, tempfile, time, traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

T0 = time.monotonic() # the budget counts from here, imports included
ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 2, 4, 8)
PRECISIONS = ("bf16", "fp16")
RATIO_GOAL, INFER_GOAL = 1.1, 1.02
# Memory limits for the goals: what torch reports as a card's total, less 0.5 GiB for the CUDA context (not counted
# by the allocator). 24 GB cards (RTX 3090/4090, A10) report 23.6-23.7 GiB; a 16 GB T4 reports 14.7 GiB.
MEM_24GB_GIB, MEM_16GB_GIB = 23.1, 14.2
FLOORS = {"first-hooked": "UNet forward + backward from the loss to the input of the first LLLite-hooked attention "
                          "(its q/k/v projections), LLLite removed",
          "latents": "UNet forward + backward to the noisy latents (requires_grad), LLLite removed"}
PASS = {True: "pass", False: "FAIL", None: "not measured"}
SDXL_SHAPES = dict(latent=(4, 128, 128), prompt_embeds=(77, 2048), pooled=(1280,), time_ids=(6,))


def say(*a):
    "Progress to stderr (stdout carries the table)."
    print(f"[{time.monotonic() - T0:6.1f}s{' compile child' if '--compile-child' in sys.argv else ''}]", *a,
          file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny SDXL-layout UNet at latent 8 (64 px) on the CPU, 1 timed run each")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_results.json"), help="JSON results file")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock limit for the whole run (480; smoke: 110)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs of each variant (5; smoke: 1)")
    p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="training batch sizes")
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS, help="autocast dtypes")
    p.add_argument("--floor", choices=("first-hooked", "latents"), default="first-hooked",
                   help="where the floor's backward starts needing gradients (see the module docstring)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile check")
    p.add_argument("--compile-backend", default=None, help="torch.compile backend (inductor; smoke: eager)")
    p.add_argument("--compile-reserve-s", type=float, default=None,
                   help="seconds of the budget kept for the compile check (240; smoke: 50)")
    p.add_argument("--compile-child", metavar="JSON", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    smoke = a.smoke
    a.budget_s = a.budget_s if a.budget_s is not None else (110.0 if smoke else 480.0)
    a.repeats = a.repeats or (1 if smoke else 5)
    a.warmup = 1 if smoke else 2 # rounds before timing; the first also measures peak memory
    a.compile_backend = a.compile_backend or ("eager" if smoke else "inductor")
    a.compile_reserve_s = 0.0 if a.no_compile else (a.compile_reserve_s if a.compile_reserve_s is not None
                                                    else (50.0 if smoke else 240.0))
    return a


# ---------------------------------------------------------------- device, memory, time

class Meter:
    "Synchronisation, freeing and peak memory on one device (CUDA allocator stats, or the process's peak RSS on CPU)."
    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.type == "cuda"

    def sync(self):
        if self.cuda: self.torch.cuda.synchronize()

    def free(self, collect: bool = True):
        "Return cached device memory; `collect` first (slow) also frees tensors held in reference cycles."
        if collect: gc.collect()
        if self.cuda: self.torch.cuda.empty_cache()

    def reset(self):
        self.sync()
        if self.cuda: self.torch.cuda.reset_peak_memory_stats()
        else:
            try: Path("/proc/self/clear_refs").write_text("5") # resets VmHWM to the current RSS
            except OSError: pass

    def peak(self) -> dict:
        "Peak since `reset`, GiB: allocated (tensors) and reserved (held by the caching allocator; None on CPU)."
        self.sync()
        if self.cuda:
            c = self.torch.cuda
            return dict(peak_gib=c.max_memory_allocated() / 2**30, peak_reserved_gib=c.max_memory_reserved() / 2**30)
        import resource
        try: hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 2**20
        except (OSError, StopIteration): hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        return dict(peak_gib=hwm, peak_reserved_gib=None)


def is_oom(e: BaseException) -> bool:
    import torch
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower() or "can't allocate memory" in str(e)


@dataclass
class Phase:
    "One variant to time: `run` queues one unit of work; `prepare` (untimed) sets hooks etc.; `cleanup` frees its state."
    name: str
    run: Callable[[], None]
    prepare: Callable[[], None] = lambda: None
    cleanup: Callable[[], None] = lambda: None


def measure(phases: list, meter: Meter, warmup: int, repeats: int, deadline: float, units: int = 1) -> dict:
    """Interleave `phases` (A B A B ...): round 0 measures each one's peak memory after emptying the cache, rounds up to
    `warmup` warm up, then `repeats` timed rounds while the deadline allows. Per phase: status, median seconds, rates."""
    res = {p.name: dict(status="ok", times=[]) for p in phases}
    live = list(phases)
    if time.monotonic() > deadline:
        return {n: dict(status="skipped (time)") for n in res}

    def attempt(p) -> float | None:
        failed = None
        try:
            p.prepare(); meter.sync(); t = time.perf_counter()
            p.run(); meter.sync()
            return time.perf_counter() - t
        except Exception as e: # OOM or anything else: recorded, the run goes on
            failed = "OOM" if is_oom(e) else f"error: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            if failed != "OOM": traceback.print_exc(file=sys.stderr)
        res[p.name]["status"] = failed # the exception (and the frames holding its tensors) is gone here
        live.remove(p); p.cleanup(); meter.free()
        say(f"  {p.name}: {failed}")
        return None

    for r in range(max(warmup, 1)):
        for p in list(live):
            if r == 0: meter.free(collect=False); meter.reset()
            if attempt(p) is not None and r == 0: res[p.name].update(meter.peak())
    for _ in range(repeats):
        if time.monotonic() > deadline or not live: break
        for p in list(live):
            t = attempt(p)
            if t is not None: res[p.name]["times"].append(t)
    for n, r in res.items():
        if r["status"] == "ok" and not r["times"]: r["status"] = "skipped (time)"
        if r["times"]:
            med = statistics.median(r["times"])
            r.update(median_s=med, min_s=min(r["times"]), max_s=max(r["times"]), repeats=len(r["times"]),
                     steps_per_s=1 / med, samples_per_s=units / med)
    return res


# ---------------------------------------------------------------- model and data

def unet_config(smoke: bool) -> dict:
    "SDXL's UNet config; for --smoke the same layout at tiny widths."
    from lllite_nb import sdxl_unet_config
    cfg = sdxl_unet_config()
    if smoke:
        cfg.update(sample_size=8, block_out_channels=(32, 64, 128), transformer_layers_per_block=(1, 1, 1),
                   attention_head_dim=(2, 4, 8), cross_attention_dim=64, addition_time_embed_dim=8,
                   projection_class_embeddings_input_dim=32 + 6 * 8, norm_num_groups=8)
    return cfg


def build_unet(cfg: dict, device, dtype):
    "A frozen, seeded random-weight UNet built on `device` (no fp32 copy stays behind)."
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.utils import logging as dlog
    dlog.set_verbosity_error() # diffusers warns about any dtype cast; the weights are random anyway
    torch.manual_seed(0)
    with torch.device(device): unet = UNet2DConditionModel(**cfg)
    unet = unet.to(dtype).requires_grad_(False).eval()
    gc.collect()
    if device.type == "cuda": torch.cuda.empty_cache()
    return unet


@dataclass
class Shapes:
    latent: int # latent side (128 at 1024 px)
    text: int # prompt-embedding width (2048)
    pooled: int # pooled-embedding width (1280)

    @property
    def px(self): return self.latent * 8

    @classmethod
    def of(cls, cfg):
        return cls(cfg["sample_size"], cfg["cross_attention_dim"],
                   cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"])


def batch_tensors(s: Shapes, b: int, device, dtype, seed: int = 0) -> dict:
    "Random cached-latent-style inputs: fp32 latents and guides, text embeddings in the text encoders' dtype."
    import torch
    g = torch.Generator(device).manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=g, device=device)
    ids = torch.tensor([[s.px, s.px, 0, 0, s.px, s.px]] * b, dtype=torch.float32, device=device)
    return dict(lat=rnd(b, 4, s.latent, s.latent), cond=torch.rand(b, 3, s.px, s.px, generator=g, device=device) * 2 - 1,
                emb=rnd(b, 77, s.text).to(dtype), pooled=rnd(b, s.pooled).to(dtype), ids=ids)


def first_hooked_attention(unet, net) -> str:
    "Path of the attention module whose projections are the first LLLite-hooked layers to run."
    order = {n: i for i, (n, _) in enumerate(unet.named_modules())}
    first = min((m.target_name for m in net.lllite_modules.values()), key=order.__getitem__)
    return first.rsplit(".", 1)[0]


# ---------------------------------------------------------------- training

@dataclass
class Ctx:
    "What every stage shares."
    torch: object
    device: object
    meter: Meter
    shapes: Shapes
    args: argparse.Namespace
    dtypes: dict = field(default_factory=dict)


def training_config(ctx: Ctx, unet, net, opt, scaler, prec: str, gc_on: bool, b: int, deadline: float) -> dict:
    "Floor and LLLite step for one (precision, checkpointing, batch), interleaved."
    torch = ctx.torch
    from lllite_nb import LLLiteUNet, draw_noise, noise_scheduler, training_loss
    dt, dev = ctx.dtypes[prec], ctx.device
    x = batch_tensors(ctx.shapes, b, dev, dt, seed=b)
    sched = noise_scheduler()
    noise, t = draw_noise(x["lat"], torch.Generator(dev).manual_seed(b))
    model = LLLiteUNet(unet, net).train()
    autocast = lambda: torch.autocast(dev.type, dtype=dt)
    args = lambda lat: (lat, x["cond"], x["emb"], x["pooled"], x["ids"], noise, t)
    probe = next(iter(net.lllite_modules.values())).up[0].weight
    losses = []

    class Bare(torch.nn.Module): # the UNet alone, in LLLiteUNet's call signature
        def forward(self, noisy, timesteps, cond_image, e, p, i):
            return unet(noisy, timesteps, encoder_hidden_states=e, added_cond_kwargs=dict(text_embeds=p, time_ids=i)).sample
    bare, leaf, hook = Bare(), [], []
    attn = unet.get_submodule(first_hooked_attention(unet, net))

    def needs_grad(mod, a): # floor: gradients are wanted from the first hooked layer's input on, as the LLLite's are
        x0 = a[0].detach().requires_grad_(True)
        if not leaf: leaf.append(x0) # (checkpointing recomputes the block: the first leaf is the one in the graph)
        return (x0, *a[1:])

    def floor_prepare():
        net.restore(); net.set_cond_image(None)
        if ctx.args.floor == "first-hooked" and not hook: hook.append(attn.register_forward_pre_hook(needs_grad))

    def floor():
        lat = x["lat"] if ctx.args.floor == "first-hooked" else x["lat"].clone().requires_grad_(True)
        with autocast(): loss = training_loss(bare, sched, *args(lat))
        (scaler.scale(loss) if scaler else loss).backward()
        reached = (leaf[0] if leaf else lat).grad is not None
        leaf.clear()
        if not reached: raise RuntimeError("the floor's backward did not reach its start")

    def step_prepare():
        for h in hook: h.remove()
        hook.clear()
        if not net.applied: net.apply_to()

    def step():
        with autocast(): loss = training_loss(model, sched, *args(x["lat"]))
        if scaler:
            scaler.scale(loss).backward(); scaler.unscale_(opt)
        else: loss.backward()
        if probe.grad is None: raise RuntimeError("no gradient reached the LLLite")
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        if scaler: scaler.step(opt); scaler.update()
        else: opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    def cleanup():
        opt.zero_grad(set_to_none=True); net.set_cond_image(None); leaf.clear()

    unet.disable_gradient_checkpointing()
    if gc_on: unet.enable_gradient_checkpointing()
    try:
        res = measure([Phase("floor", floor, floor_prepare, cleanup), Phase("step", step, step_prepare, cleanup)],
                      ctx.meter, ctx.args.warmup, ctx.args.repeats, deadline, units=b)
    finally:
        for h in hook: h.remove()
        net.restore(); cleanup()
    row = dict(precision=prec, checkpointing=gc_on, batch=b, px=ctx.shapes.px, floor=res["floor"], step=res["step"])
    if losses:
        row["step"]["finite_loss_fraction"] = float(torch.stack(losses).isfinite().float().mean())
    if scaler: row["step"]["grad_scale_end"] = float(scaler.get_scale())
    f, s = res["floor"], res["step"]
    row["status"] = "ok" if f["status"] == s["status"] == "ok" else s["status"] if f["status"] == "ok" else f["status"]
    if "median_s" in f and "median_s" in s: row["ratio"] = s["median_s"] / f["median_s"]
    del x, noise, t, losses
    ctx.meter.free()
    return row


def guarded(fn, meter: Meter, base: dict, phases: tuple) -> dict:
    "fn() -> row; a failure outside the timed runs (e.g. OOM while making a batch) becomes a row saying so."
    failed = None
    try: return fn()
    except Exception as e:
        failed = "OOM" if is_oom(e) else f"error: {type(e).__name__}: {str(e)[:300]}"
        if failed != "OOM": traceback.print_exc(file=sys.stderr)
    meter.free()
    return dict(base, status=failed, **{p: dict(status=failed) for p in phases})


def estimate_s(rows: list, prec: str, gc_on: bool, b: int, rounds: int) -> float:
    "Seconds a training config will take, from the last measured one (same precision and checkpointing if any)."
    done = [r for r in rows if "ratio" in r]
    same = [r for r in done if r["precision"] == prec and r["checkpointing"] == gc_on] or done
    if not same: return 0.0
    r = same[-1]
    return 1.2 * rounds * (r["floor"]["median_s"] + r["step"]["median_s"]) * b / r["batch"]


# ---------------------------------------------------------------- inference

def inference_rows(ctx: Ctx, unet, prec: str, deadline: float) -> dict:
    "One CFG denoising step without / with the LLLite, and the conditioning embedding (once per generation)."
    torch = ctx.torch
    from lllite_nb import ControlNetLLLite
    dt, dev, s = ctx.dtypes[prec], ctx.device, ctx.shapes
    net = ControlNetLLLite(unet, 32, 64).to(dev, dt).eval()
    for m in net.lllite_modules.values(): torch.nn.init.normal_(m.up[0].weight, std=0.01) # trained-like, not zero
    x = batch_tensors(s, 1, dev, dt, seed=100)
    guide = x["cond"].to(dt)
    lat, emb2 = x["lat"].to(dt), torch.cat([torch.zeros_like(x["emb"]), x["emb"]])
    pooled2, ids2 = torch.cat([torch.zeros_like(x["pooled"]), x["pooled"]]), torch.cat([x["ids"], x["ids"]]).to(dt)
    t = torch.tensor(500, device=dev)
    with torch.no_grad(): net.set_cond_image(guide)

    def denoise():
        with torch.no_grad():
            pred = unet(torch.cat([lat, lat]), t, encoder_hidden_states=emb2,
                        added_cond_kwargs=dict(text_embeds=pooled2, time_ids=ids2)).sample
            u, c = pred.chunk(2)
            return u + 5.0 * (c - u)

    def embed():
        with torch.no_grad(): net.set_cond_image(guide)

    def with_prepare():
        if not net.applied: net.apply_to()
    try:
        res = measure([Phase("without", denoise, net.restore), Phase("with", denoise, with_prepare),
                       Phase("cond_embedding", embed)], ctx.meter, ctx.args.warmup, ctx.args.repeats, deadline)
    finally:
        net.restore(); net.set_cond_image(None)
    row = dict(precision=prec, px=s.px, unet_batch=2, **res)
    row["status"] = next((r["status"] for r in res.values() if r["status"] != "ok"), "ok")
    if "median_s" in res["without"] and "median_s" in res["with"]:
        row["ratio"] = res["with"]["median_s"] / res["without"]["median_s"]
    del net, x
    ctx.meter.free()
    return row


# ---------------------------------------------------------------- torch.compile (child process)

KILLED = dict(status="timeout: killed while compiling or timing", works=None)


def dynamo_counts() -> dict:
    from torch._dynamo.utils import counters
    breaks = dict(counters["graph_break"])
    return dict(graphs=int(counters["stats"].get("unique_graphs", 0)), graph_breaks=int(sum(breaks.values())),
                break_reasons=sorted(breaks, key=breaks.get, reverse=True)[:10])


def compile_child(a) -> None:
    "Compile the LLLite-hooked UNet for inference, then for a training step; results to a.compile_child as they come."
    torch, dev = setup_torch(a)
    meter, cfg = Meter(torch, dev), unet_config(a.smoke)
    s, deadline = Shapes.of(cfg), T0 + a.budget_s
    from lllite_nb import ControlNetLLLite, LLLiteUNet, draw_noise, noise_scheduler, training_loss
    out = dict(backend=a.compile_backend, precision="bf16", status="skipped (time)")
    write_json(a.compile_child, out)
    unet = build_unet(cfg, dev, torch.bfloat16)
    x = batch_tensors(s, 1, dev, torch.bfloat16, seed=7)
    gc.collect(); gc.freeze()

    def compiled_vs_eager(name, eager_fn, compiled_fn, units):
        torch._dynamo.reset(); torch._dynamo.utils.counters.clear()
        t = time.monotonic(); y_c = compiled_fn(); meter.sync(); compile_s = time.monotonic() - t
        y_e = eager_fn()
        err = float((y_c.float() - y_e.float()).norm() / y_e.float().norm().clamp_min(1e-12))
        r = dict(dynamo_counts(), compile_s=compile_s, rel_error=err, matches=err < 5e-2)
        say(f"compile {name}: {compile_s:.1f} s, {r['graphs']} graph(s), {r['graph_breaks']} break(s), rel. error {err:.1e}")
        res = measure([Phase("eager", eager_fn), Phase("compiled", compiled_fn)], meter, a.warmup, a.repeats, deadline, units)
        r["graphs_after_timing"] = dynamo_counts()["graphs"] # more than `graphs`: the timed calls recompiled
        r.update(res, status="ok" if all(v["status"] == "ok" for v in res.values()) else res["compiled"]["status"],
                 works=r["matches"] and res["compiled"]["status"] in ("ok", "skipped (time)")) # it ran and matched
        if "median_s" in res["eager"] and "median_s" in res["compiled"]:
            r["speedup"] = res["eager"]["median_s"] / res["compiled"]["median_s"]
        return r

    # inference: network in the UNet's dtype, CFG batch 2
    net = ControlNetLLLite(unet, 32, 64).to(dev, torch.bfloat16).eval()
    for m in net.lllite_modules.values(): torch.nn.init.normal_(m.up[0].weight, std=0.01)
    net.apply_to()
    with torch.no_grad(): net.set_cond_image(x["cond"].to(torch.bfloat16))
    cunet = torch.compile(unet, backend=a.compile_backend)
    kw = dict(encoder_hidden_states=torch.cat([x["emb"]] * 2),
              added_cond_kwargs=dict(text_embeds=torch.cat([x["pooled"]] * 2), time_ids=torch.cat([x["ids"]] * 2).to(torch.bfloat16)))
    lat2, t = torch.cat([x["lat"]] * 2).to(torch.bfloat16), torch.tensor(500, device=dev)
    def infer(u):
        def f():
            with torch.no_grad(): return u(lat2, t, **kw).sample
        return f
    out["inference"] = dict(KILLED); write_json(a.compile_child, out) # what stays if the time limit strikes
    try:
        out["inference"] = compiled_vs_eager("inference", infer(unet), infer(cunet), 1)
    except Exception as e:
        out["inference"] = dict(status="OOM" if is_oom(e) else f"error: {type(e).__name__}: {str(e)[:300]}", works=False)
        traceback.print_exc(file=sys.stderr)
    net.restore(); net.set_cond_image(None); del net, cunet
    meter.free()
    out["status"] = out["inference"]["status"]
    write_json(a.compile_child, out)

    # training: batch 1, bf16 autocast, fp32 LLLite, no checkpointing; the package's loss, forward + backward
    spent = out["inference"].get("compile_s", 0.0)
    if time.monotonic() + (2 if a.compile_backend == "eager" else 3) * spent + 10 > deadline: # fwd + bwd: 2-3x the fwd
        out["training"] = dict(status="skipped (time)", works=None); write_json(a.compile_child, out); return
    net = ControlNetLLLite(unet, 32, 64).to(dev, torch.float32).train()
    net.apply_to()
    sched = noise_scheduler()
    noise, ts = draw_noise(x["lat"], torch.Generator(dev).manual_seed(1))
    eager_m, comp_m = LLLiteUNet(unet, net).train(), LLLiteUNet(torch.compile(unet, backend=a.compile_backend), net).train()
    probe = next(iter(net.lllite_modules.values())).up[0].weight
    def train_step(m):
        def f():
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = training_loss(m, sched, x["lat"], x["cond"], x["emb"], x["pooled"], x["ids"], noise, ts)
            loss.backward()
            g = probe.grad.detach().clone(); net.zero_grad(set_to_none=True)
            return g
        return f
    out["training"] = dict(KILLED); write_json(a.compile_child, out)
    try:
        out["training"] = compiled_vs_eager("training", train_step(eager_m), train_step(comp_m), 1)
    except Exception as e:
        out["training"] = dict(status="OOM" if is_oom(e) else f"error: {type(e).__name__}: {str(e)[:300]}", works=False)
        traceback.print_exc(file=sys.stderr)
    net.restore()
    write_json(a.compile_child, out)


def run_compile_child(a, deadline: float) -> dict:
    "The compile check in its own process group, killed (with inductor's workers) at the deadline."
    left = deadline - time.monotonic() - 2
    if left < (15 if a.smoke else 60): return dict(status="skipped (time)", backend=a.compile_backend,
                                                   inference=dict(status="skipped (time)"), training=dict(status="skipped (time)"))
    fd, path = tempfile.mkstemp(suffix=".json"); os.close(fd); os.unlink(path)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--compile-child", path, "--budget-s", str(left - 5), # it stops timing before it is killed
           "--repeats", str(a.repeats), "--compile-backend", a.compile_backend] + (["--smoke"] if a.smoke else [])
    say(f"compile check in a child process, {left:.0f} s at most")
    child = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr, start_new_session=True, cwd=ROOT)
    try:
        rc = child.wait(timeout=left)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL); child.wait(); rc = "timeout"
    try: out = json.loads(Path(path).read_text()); os.unlink(path)
    except (OSError, ValueError): out = dict(status="skipped (time)" if rc == "timeout" else f"error: child exited {rc}",
                                             backend=a.compile_backend)
    for k in ("inference", "training"):
        if k not in out: out[k] = dict(status="skipped (time)" if rc == "timeout" else f"error: child exited {rc}", works=None)
    return out


# ---------------------------------------------------------------- goals, output

def goals(training: list, inference: list, cuda: bool) -> list:
    "The four goals of the benchmark, each with its value, target and pass (None: not measured)."
    mem = lambda r: (r["step"].get("peak_reserved_gib") if cuda else r["step"].get("peak_gib"))
    ratios = [r["ratio"] for r in training if "ratio" in r]
    broken = [r for r in training if r["floor"]["status"] == "ok" and r["step"]["status"] == "OOM"]
    missing = [r for r in training if "ratio" not in r and r not in broken]
    g1 = False if broken or any(x > RATIO_GOAL for x in ratios) else (None if missing or not ratios else True)
    out = [dict(id="training_ratio", goal=f"training step <= {RATIO_GOAL}x its floor at every batch, precision, checkpointing",
                target=RATIO_GOAL, value=max(ratios) if ratios else None, unit="x", rows=len(ratios), of=len(training), **{"pass": g1})]
    for gid, text, lim, sel in (
            ("batch8_checkpointing_24gb", f"batch 8 at full size with checkpointing, peak <= {MEM_24GB_GIB} GiB (a 24 GB card)",
             MEM_24GB_GIB, lambda r: r["batch"] == 8 and r["checkpointing"]),
            ("batch1_16gb", f"batch 1 at full size under fp16 (a T4 has no bf16), peak <= {MEM_16GB_GIB} GiB (a 16 GB T4)",
             MEM_16GB_GIB, lambda r: r["batch"] == 1 and r["precision"] == "fp16")):
        rows = [r for r in training if sel(r)]
        fits = [(mem(r), r) for r in rows if r["status"] == "ok" and mem(r) is not None]
        best = min(fits, key=lambda v: v[0]) if fits else None
        ooms = [r for r in rows if r["step"]["status"] == "OOM"]
        ok = (best[0] <= lim) if best else (False if rows and len(ooms) == len(rows) else None)
        out.append(dict(id=gid, goal=text, target=lim, unit="GiB", value=best[0] if best else None,
                        config=dict(precision=best[1]["precision"], checkpointing=best[1]["checkpointing"]) if best else None,
                        memory="max_memory_reserved" if cuda else "peak RSS (CPU)", **{"pass": ok}))
    ir = [r["ratio"] for r in inference if "ratio" in r]
    out.append(dict(id="inference_ratio", goal=f"CFG denoising step with LLLite <= {INFER_GOAL}x without", target=INFER_GOAL,
                    unit="x", value=max(ir) if ir else None,
                    **{"pass": (max(ir) <= INFER_GOAL if len(ir) == len(inference) else (False if any(x > INFER_GOAL for x in ir) else None)) if inference else None}))
    return out


def clean(o):
    "JSON-safe: non-finite floats become None."
    if isinstance(o, float): return o if math.isfinite(o) else None
    if isinstance(o, dict): return {k: clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return [clean(v) for v in o]
    return o


def write_json(path, obj) -> None:
    "Atomically: a temporary file beside `path`, then a rename."
    p = Path(path); p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f: json.dump(clean(obj), f, indent=1, allow_nan=False)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True); raise


def fmt(v, spec=".2f"):
    return "—" if v is None else format(v, spec)


def markdown(R: dict) -> str:
    L = [f"## LLLite c32/m64 on an SDXL-architecture UNet, {R['device']}" + (" (SMOKE: tiny shapes, CPU)" if R["smoke"] else ""),
         "", f"torch {R['torch']}, diffusers {R['diffusers']}; random weights; {R['settings']['px']}² px "
         f"(latent {R['settings']['latent']}); medians of interleaved runs; floor: {R['settings']['floor']}", "",
         "| precision | ckpt | batch | floor steps/s | step steps/s | step / floor | floor peak GiB | step peak GiB | step reserved GiB | status |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in R["training"]:
        f, s = r["floor"], r["step"]
        L.append(f"| {r['precision']} | {'on' if r['checkpointing'] else 'off'} | {r['batch']} | {fmt(f.get('steps_per_s'))} | "
                 f"{fmt(s.get('steps_per_s'))} | {fmt(r.get('ratio'), '.3f')} | {fmt(f.get('peak_gib'))} | {fmt(s.get('peak_gib'))} | "
                 f"{fmt(s.get('peak_reserved_gib'))} | {r['status']} |")
    L += ["", "| inference (CFG, UNet batch 2) | without ms | with ms | with / without | cond. embedding ms (once per image) | status |",
          "|---|---|---|---|---|---|"]
    ms = lambda d: None if d.get("median_s") is None else 1e3 * d["median_s"]
    for r in R["inference"]:
        L.append(f"| {r['precision']} | {fmt(ms(r['without']), '.1f')} | {fmt(ms(r['with']), '.1f')} | {fmt(r.get('ratio'), '.3f')} | "
                 f"{fmt(ms(r['cond_embedding']), '.2f')} | {r['status']} |")
    c = R["compile"]
    L += ["", f"| torch.compile ({c.get('backend')}, bf16) | works | graphs | graph breaks | compile s | eager ms | compiled ms | speed-up | status |",
          "|---|---|---|---|---|---|---|---|---|"]
    for k in ("inference", "training"):
        d = c.get(k, {})
        L.append(f"| {k} | {d.get('works')} | {d.get('graphs', '—')} | {d.get('graph_breaks', '—')} | {fmt(d.get('compile_s'), '.1f')} | "
                 f"{fmt(ms(d.get('eager', {})), '.1f')} | {fmt(ms(d.get('compiled', {})), '.1f')} | {fmt(d.get('speedup'), '.2f')} | "
                 f"{d.get('status')} |")
    L += ["", "| goal | value | target | pass |", "|---|---|---|---|"]
    for g in R["goals"]:
        L.append(f"| {g['goal']} | {fmt(g['value'], '.3f')} {g['unit']} | {g['target']} {g['unit']} | "
                 f"{PASS[g['pass']]} |")
    L += ["", f"wall clock {R['wall_s']:.0f} s of a {R['settings']['budget_s']:.0f} s budget"]
    return "\n".join(L)


# ---------------------------------------------------------------- main

def setup_torch(a):
    import torch
    if not a.smoke and not torch.cuda.is_available():
        sys.exit(f"benchmarks/gpu.py: no CUDA device (torch {torch.__version__}); run `python benchmarks/gpu.py --smoke` on the CPU")
    return torch, torch.device("cpu" if a.smoke else "cuda")


def main(argv=None):
    a = parse_args(argv)
    if a.compile_child: return compile_child(a)
    torch, dev = setup_torch(a)
    import diffusers
    from lllite_nb import ControlNetLLLite
    deadline = T0 + a.budget_s
    cfg, meter = unet_config(a.smoke), Meter(torch, dev)
    shapes = Shapes.of(cfg)
    if not a.smoke: # the full run is SDXL's shapes or nothing
        got = dict(latent=(4, shapes.latent, shapes.latent), prompt_embeds=(77, shapes.text), pooled=(shapes.pooled,), time_ids=(6,))
        assert got == SDXL_SHAPES, f"SDXL shapes expected, got {got}"
    ctx = Ctx(torch, dev, meter, shapes, a, dict(bf16=torch.bfloat16, fp16=torch.float16))
    name = (f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB)"
            if dev.type == "cuda" else f"CPU {platform.machine()} ({torch.get_num_threads()} thread(s))")
    R = dict(complete=False, smoke=a.smoke, device=name, cuda=dev.type == "cuda", torch=torch.__version__,
             diffusers=diffusers.__version__, python=platform.python_version(),
             cuda_version=torch.version.cuda, bf16_supported=bool(dev.type == "cuda" and torch.cuda.is_bf16_supported()),
             settings=dict(px=shapes.px, latent=shapes.latent, prompt_embeds=(77, shapes.text), pooled=shapes.pooled,
                           cond_emb_dim=32, network_dim=64, batches=a.batches, precisions=a.precisions, repeats=a.repeats,
                           warmup_rounds=a.warmup, budget_s=a.budget_s, floor=FLOORS[a.floor],
                           optimizer="AdamW lr 2e-4, clip 1.0", memory="torch.cuda max_memory_allocated / "
                           "max_memory_reserved" if dev.type == "cuda" else "process peak RSS (VmHWM)"),
             training=[], inference=[], compile=dict(status="skipped (time)"), goals=[])
    R["settings"]["cuda_alloc_conf"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF")
    say(f"{name}: building the UNet ({'tiny, smoke' if a.smoke else 'SDXL'}) ...")
    unet = build_unet(cfg, dev, ctx.dtypes[a.precisions[0]])
    R["settings"]["unet_params"] = sum(p.numel() for p in unet.parameters())
    net = ControlNetLLLite(unet, 32, 64).to(dev, torch.float32).train()
    R["settings"].update(lllite_params=sum(p.numel() for p in net.parameters()), lllite_modules=len(net.lllite_modules),
                         floor_start=first_hooked_attention(unet, net) if a.floor == "first-hooked" else "noisy latents")
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
    gc.collect(); gc.freeze() # later collections skip the libraries' and models' objects: 0.4 s -> ms each
    train_deadline = deadline - a.compile_reserve_s
    rounds = a.warmup + a.repeats
    for prec in a.precisions:
        unet.to(ctx.dtypes[prec])
        say(f"{prec}: inference")
        R["inference"].append(guarded(lambda: inference_rows(ctx, unet, prec, train_deadline), meter,
                                      dict(precision=prec, px=shapes.px, unet_batch=2), ("without", "with", "cond_embedding")))
        scaler = torch.amp.GradScaler(dev.type) if prec == "fp16" else None
        for gc_on in (False, True):
            for b in a.batches:
                est = estimate_s(R["training"], prec, gc_on, b, rounds)
                if time.monotonic() + est > train_deadline:
                    skip = dict(status="skipped (time)")
                    row = dict(precision=prec, checkpointing=gc_on, batch=b, px=shapes.px, floor=skip, step=dict(skip),
                               status="skipped (time)")
                else:
                    row = guarded(lambda: training_config(ctx, unet, net, opt, scaler, prec, gc_on, b, train_deadline), meter,
                                  dict(precision=prec, checkpointing=gc_on, batch=b, px=shapes.px), ("floor", "step"))
                R["training"].append(row)
                say(f"{prec} ckpt={'on' if gc_on else 'off'} batch {b}: {row['status']}"
                    + (f", step/floor {row['ratio']:.3f}, {row['step']['steps_per_s']:.2f} steps/s" if "ratio" in row else ""))
                write_json(a.out, R)
    unet.disable_gradient_checkpointing()
    del unet, net, opt
    gc.unfreeze(); meter.free() # the child compiles a UNet of its own
    if not a.no_compile:
        R["compile"] = run_compile_child(a, deadline)
    else:
        R["compile"] = dict(status="skipped (--no-compile)", inference=dict(status="skipped"), training=dict(status="skipped"))
    R["goals"] = goals(R["training"], R["inference"], dev.type == "cuda")
    R["wall_s"], R["complete"] = time.monotonic() - T0, True
    write_json(a.out, R)
    print(markdown(R), flush=True)
    say(f"results written to {a.out}")


if __name__ == "__main__":
    main()
