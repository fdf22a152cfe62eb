"""How much does LLLite add to a training step? Run by hand (not a test):

    python benchmarks/bench_train.py              # tiny model: step vs floor, and end-to-end `train` steps/s
    python benchmarks/bench_train.py --sdxl       # also a real-size SDXL UNet (fp32, CPU, ~14 GB RAM, minutes)

The *floor* is the same UNet forward + backward without the LLLite branch, with gradients still flowing to the UNet
input (so the backward pass runs through the whole UNet, as it must to reach the LLLite modules). The *step* is what
`train` does per batch minus data loading: guide embedding, UNet forward with LLLite, fp32 MSE loss, backward,
gradient clipping, AdamW step. Both run with and without gradient checkpointing; each configuration runs in its own
process so that peak memory (VmHWM, reset between phases) is its own. Floor and step are interleaved so that a busy
machine slows both alike.
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def reset_peak() -> bool:
    "Reset this process's peak RSS (Linux: /proc/self/clear_refs 5)."
    try:
        with open("/proc/self/clear_refs", "w") as f: f.write("5")
        return True
    except OSError: return False


def peak_gib() -> float:
    "Peak RSS since the last reset (VmHWM), else the process's ru_maxrss, in GiB."
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"): return int(line.split()[1]) / 2**20
    except OSError: pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def mem_available_gib() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"): return int(line.split()[1]) / 2**20
    return float("inf")


def one_config(model: str, gc: bool, repeats: int, threads: int) -> dict:
    "Time floor and step for one (model, checkpointing) configuration, in this process."
    import torch
    from lllite_nb.inject import ControlNetLLLite
    from lllite_nb.models import sdxl_unet_config, tiny_unet
    from lllite_nb.models import noise_scheduler
    from lllite_nb.training import LLLiteUNet, draw_noise, training_loss
    from diffusers import UNet2DConditionModel
    torch.set_num_threads(threads); torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    if model == "tiny": unet, b, px = tiny_unet(), 4, 128
    else:
        torch.manual_seed(0); unet, b, px = UNet2DConditionModel(**sdxl_unet_config()).eval(), 1, 256
    build_s = time.perf_counter() - t0
    unet.requires_grad_(False)
    if gc: unet.enable_gradient_checkpointing()
    c = unet.config
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(b, 4, px // 8, px // 8, generator=g)
    cond = torch.rand(b, 3, px, px, generator=g) * 2 - 1
    emb = torch.randn(b, 77, c.cross_attention_dim, generator=g)
    pooled = torch.randn(b, c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim, generator=g)
    ids = torch.tensor([[px, px, 0, 0, px, px]] * b, dtype=torch.float32)
    sched = noise_scheduler()
    noise, t = draw_noise(lat, torch.Generator().manual_seed(1))
    net = ControlNetLLLite(unet, 32, 64)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
    lllite_model = LLLiteUNet(unet, net).train()

    class Bare(torch.nn.Module):
        def forward(self, noisy, timesteps, cond_image, e, p, i):
            return unet(noisy, timesteps, encoder_hidden_states=e, added_cond_kwargs=dict(text_embeds=p, time_ids=i)).sample
    bare = Bare()

    def floor():
        x = lat.clone().requires_grad_(True) # gradients reach the UNet input
        training_loss(bare, sched, x, cond, emb, pooled, ids, noise, t).backward()

    def step():
        loss = training_loss(lllite_model, sched, lat, cond, emb, pooled, ids, noise, t)
        loss.backward(); torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0); opt.step(); opt.zero_grad(set_to_none=True)

    def run(name):
        "One floor (network unhooked) or step (hooked); returns seconds."
        net.restore()
        if name == "step": net.apply_to()
        t1 = time.perf_counter(); (floor if name == "floor" else step)(); return time.perf_counter() - t1

    times, peaks = {"floor": [], "step": []}, {}
    for name in ("floor", "step"): # warm-up, and each phase's own peak memory
        reset_peak(); run(name); peaks[name] = peak_gib()
    for _ in range(repeats):
        for name in ("floor", "step"): times[name].append(run(name))
    net.restore()
    return dict(model=model, gc=gc, batch=b, px=px, threads=threads, build_s=build_s, repeats=repeats,
                floor_s=statistics.median(times["floor"]), step_s=statistics.median(times["step"]),
                floor_min_s=min(times["floor"]), step_min_s=min(times["step"]),
                floor_peak_gib=peaks["floor"], step_peak_gib=peaks["step"], peak_reset=reset_peak())


def end_to_end(steps: int, threads: int) -> dict:
    "Steps/s of `train` itself on the tiny model and the sample data (128 px, batch 4, both caches)."
    import torch
    from lllite_nb.fit import train
    from lllite_nb.trainer import TrainConfig
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(dataset_config=str(ROOT / "data_samples/dataset.toml"), max_train_steps=steps, output_dir=d,
                          cache_latents=True, cache_text_encoder_outputs=True, progress=False)
        t0 = time.perf_counter(); res = train(cfg); total = time.perf_counter() - t0
    return dict(steps=steps, loop_s=res.seconds, steps_per_s=steps / res.seconds, total_s=total)


def run_child(args: list) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode: raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sdxl", action="store_true", help="also the real-size SDXL UNet (needs ~14 GB free RAM)")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per configuration (tiny)")
    p.add_argument("--sdxl-repeats", type=int, default=2, help="timed steps per configuration (SDXL)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    p.add_argument("--e2e-steps", type=int, default=20, help="steps of the end-to-end tiny run (0: skip)")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "GC", "REPEATS"), help=argparse.SUPPRESS)
    p.add_argument("--e2e-child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(one_config(a.child[0], a.child[1] == "1", int(a.child[2]), a.threads))); return
    if a.e2e_child:
        print(json.dumps(end_to_end(a.e2e_child, a.threads))); return
    plan = [("tiny", gc, a.repeats) for gc in (False, True)]
    if a.sdxl:
        if mem_available_gib() < 16: raise SystemExit(f"only {mem_available_gib():.1f} GiB available; the SDXL part needs ~16")
        plan += [("sdxl", gc, a.sdxl_repeats) for gc in (False, True)]
    print(f"{'model':6} {'ckpt':5} {'batch':>5} {'px':>4} {'floor s':>9} {'step s':>9} {'ratio':>6} {'floor GiB':>10} {'step GiB':>9}")
    for model, gc, r in plan:
        res = run_child(["--child", model, "1" if gc else "0", str(r), "--threads", str(a.threads)])
        print(f"{model:6} {'on' if gc else 'off':5} {res['batch']:>5} {res['px']:>4} {res['floor_s']:>9.3f} {res['step_s']:>9.3f} "
              f"{res['step_s'] / res['floor_s']:>6.2f} {res['floor_peak_gib']:>10.2f} {res['step_peak_gib']:>9.2f}"
              f"   (min {res['floor_min_s']:.3f} / {res['step_min_s']:.3f}; {r} repeats, {res['threads']} thread(s), build {res['build_s']:.0f} s)",
              flush=True)
    if a.e2e_steps:
        e = run_child(["--e2e-child", str(a.e2e_steps), "--threads", str(a.threads)])
        print(f"end to end, tiny, 128 px, batch 4, cached: {e['steps']} steps in {e['loop_s']:.1f} s = {e['steps_per_s']:.2f} steps/s "
              f"(with model loading and caching {e['total_s']:.1f} s)")
    print("ratio = step / floor (median); goal <= 1.1. Peak = VmHWM of the phase (process RSS, includes the model).")


if __name__ == "__main__":
    main()
