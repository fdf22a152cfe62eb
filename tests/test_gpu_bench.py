"""benchmarks/gpu.py: the --smoke run (tiny shapes, CPU) writes every row with finite positive figures, the time guard
marks what it skips, and without CUDA the full run stops with one line. Timings are written, never asserted."""
import json, math, os, subprocess, sys
from itertools import product
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
TRAIN_KEYS = set(product(("bf16", "fp16"), (False, True), (1, 2, 4, 8)))
GOALS = {"training_ratio": 1.1, "batch8_checkpointing_24gb": 23.1, "batch1_16gb": 14.2, "inference_ratio": 1.02}


def run(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=timeout)


def positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def check_timed(d: dict, units: int = 1):
    "A phase that ran: status ok, median within its runs, rates from the median, a peak memory."
    assert d["status"] == "ok", d
    for k in ("median_s", "min_s", "max_s", "steps_per_s", "samples_per_s", "peak_gib"):
        assert positive(d[k]), (k, d)
    assert d["min_s"] <= d["median_s"] <= d["max_s"] and d["repeats"] == len(d["times"]) >= 1
    assert d["steps_per_s"] == 1 / d["median_s"] and d["samples_per_s"] == units / d["median_s"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_bench") / "results.json"
    # a budget that a busy machine cannot exhaust: every row must be measured here (the guard has its own test)
    p = run("--smoke", "--out", str(out), "--budget-s", "400")
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(out.read_text()), p.stdout


def test_smoke_header(smoke):
    r, _ = smoke
    assert r["complete"] is True and r["smoke"] is True and r["cuda"] is False
    assert r["device"].startswith("CPU") and r["torch"] and r["diffusers"]
    s = r["settings"]
    assert (s["cond_emb_dim"], s["network_dim"], s["px"], s["latent"]) == (32, 64, 64, 8)
    assert s["lllite_modules"] == 20 # tiny layout, one transformer block per attention: 2*4 + 2*4 + 4
    assert s["floor_start"] == "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
    assert s["batches"] == [1, 2, 4, 8] and s["precisions"] == ["bf16", "fp16"]


def test_smoke_training_rows(smoke):
    r, _ = smoke
    rows = r["training"]
    assert len(rows) == 16 and {(x["precision"], x["checkpointing"], x["batch"]) for x in rows} == TRAIN_KEYS
    for x in rows:
        assert x["status"] == "ok", x
        check_timed(x["floor"], x["batch"]); check_timed(x["step"], x["batch"])
        assert x["ratio"] == x["step"]["median_s"] / x["floor"]["median_s"]
        assert x["step"]["finite_loss_fraction"] == 1.0
        assert ("grad_scale_end" in x["step"]) == (x["precision"] == "fp16")


def test_smoke_inference_rows(smoke):
    r, _ = smoke
    assert [x["precision"] for x in r["inference"]] == ["bf16", "fp16"]
    for x in r["inference"]:
        assert x["status"] == "ok" and x["unet_batch"] == 2
        for k in ("without", "with", "cond_embedding"): check_timed(x[k])
        assert x["ratio"] == x["with"]["median_s"] / x["without"]["median_s"]


def test_smoke_compile_row(smoke):
    c = smoke[0]["compile"]
    assert c["backend"] == "eager" and c["status"] == "ok"
    for k in ("inference", "training"):
        d = c[k]
        assert d["status"] == "ok" and d["works"] is True and d["matches"] is True, (k, d)
        assert d["graphs"] == d["graphs_after_timing"] == 1 and d["graph_breaks"] == 0 and d["break_reasons"] == [] # one whole graph
        assert d["rel_error"] == 0.0 # the eager backend runs the same ops in the same order
        assert positive(d["compile_s"]) and d["speedup"] == d["eager"]["median_s"] / d["compiled"]["median_s"]
        check_timed(d["eager"]); check_timed(d["compiled"])


def test_smoke_goals(smoke):
    r, out = smoke
    assert {g["id"]: g["target"] for g in r["goals"]} == GOALS
    for g in r["goals"]:
        assert g["goal"] and g["unit"] in ("x", "GiB") and positive(g["value"])
        assert g["pass"] is (g["value"] <= g["target"])
    assert max(x["ratio"] for x in r["training"]) == r["goals"][0]["value"]
    lines = out.splitlines() # the markdown table: 16 training rows, 2 inference rows, 2 compile rows, 4 goals
    assert sum(l.startswith(("| bf16 | o", "| fp16 | o")) for l in lines) == 16
    assert sum(l.startswith(("| bf16 | ", "| fp16 | ")) for l in lines) == 18
    assert sum(l.startswith(("| inference | True", "| training | True")) for l in lines) == 2
    assert sum(l.endswith(("| pass |", "| FAIL |")) and not l.startswith("| goal |") for l in lines) == 4


def test_time_guard_skips_and_says_so(tmp_path):
    out = tmp_path / "r.json"
    p = run("--smoke", "--out", str(out), "--budget-s", "1", timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["complete"] is True and {(x["precision"], x["checkpointing"], x["batch"]) for x in r["training"]} == TRAIN_KEYS
    assert {x["status"] for x in r["training"]} == {x["floor"]["status"] for x in r["training"]} == {"skipped (time)"}
    assert {x["status"] for x in r["inference"]} == {"skipped (time)"}
    assert r["compile"]["status"] == r["compile"]["inference"]["status"] == r["compile"]["training"]["status"] == "skipped (time)"
    assert [g["pass"] for g in r["goals"]] == [None] * 4
    assert "not measured" in p.stdout


def test_full_run_needs_cuda(tmp_path):
    import torch
    if torch.cuda.is_available(): pytest.skip("a CUDA device is present: the full run would start")
    out = tmp_path / "r.json"
    p = run("--out", str(out), timeout=120)
    assert p.returncode != 0 and p.stdout == "" and not out.exists()
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.startswith("benchmarks/gpu.py: no CUDA device") and "--smoke" in p.stderr
