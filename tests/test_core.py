"LLLite core: module maths, SDXL key format, injection/restore, weights files, bad input."
import json, os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lllite_nb.module import LLLiteModule, check_cond_image, pad_to_stride, randomize_, reference_forward as reference
from lllite_nb.inject import (ControlNetLLLite, LLLiteStateDictError, diffusers_to_ldm, ldm_to_diffusers,
                              lllite_depth, lllite_targets)
from lllite_nb.models import build_meta_unet, sdxl_unet_config, tiny_unet, load_pipeline

REPO = Path(__file__).resolve().parents[1]
REF_JSON = REPO.parent / "shared" / "reference" / "lllite_sdxl_keys_c32_d64.json"


@pytest.fixture(scope="module")
def ref():
    if not REF_JSON.exists():
        msg = f"kohya reference {REF_JSON} not found (shared/ must sit beside the repo)"
        if os.environ.get("CI"): pytest.fail(msg)  # CI always has shared/: a missing copy must not pass as a skip
        pytest.skip(msg)
    return json.loads(REF_JSON.read_text())

@pytest.fixture(scope="module")
def meta_net():
    return ControlNetLLLite(build_meta_unet(sdxl_unet_config()), cond_emb_dim=32, network_dim=64)

def unet_inputs(b=2, hw=(8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    lat, ctx = torch.randn(b, 4, *hw, generator=g), torch.randn(b, 77, 64, generator=g)
    H, W = hw[0] * 8, hw[1] * 8
    added = dict(text_embeds=torch.randn(b, 32, generator=g), time_ids=torch.tensor([[H, W, 0, 0, H, W]] * b, dtype=torch.float32))
    return lat, ctx, added

def run_unet(unet, inputs):
    lat, ctx, added = inputs
    with torch.no_grad(): return unet(lat, 10, ctx, added_cond_kwargs=added).sample


# --- kohya format on real SDXL shapes (meta device) -------------------------------------------------------

def test_sdxl_keys_and_shapes(meta_net, ref):
    got = {k: list(v.shape) for k, v in meta_net.state_dict().items()}
    want = {r["key"]: r["shape"] for r in ref["keys"]}
    assert set(got) == set(want)
    assert got == want
    assert len(got) == 1600

def test_sdxl_param_count(meta_net, ref):
    assert sum(p.numel() for p in meta_net.parameters()) == 22_969_600 == ref["total_params"]
    assert all(p.device.type == "cpu" for p in meta_net.parameters())

def test_sdxl_module_table(meta_net, ref):
    got = [(n, m.target_name, m.depth, m.org_module[0].in_features) for n, m in meta_net.lllite_modules.items()]
    assert got == [(r["lllite_name"], r["diffusers_module"], r["depth"], r["in_features"]) for r in ref["modules"]]

def test_name_table_both_ways(ref):
    for r in ref["modules"]:
        assert diffusers_to_ldm(r["diffusers_module"]) == r["unet_module"]
        assert ldm_to_diffusers(r["unet_module"]) == r["diffusers_module"]
        assert lllite_depth(r["unet_module"]) == r["depth"]
    assert diffusers_to_ldm("up_blocks.1.attentions.2.proj_out") == "output_blocks.5.1.proj_out"
    with pytest.raises(ValueError, match="input_blocks.6.1"): ldm_to_diffusers("input_blocks.6.1.x")

def test_non_sdxl_layout_refused():
    cfg = dict(sdxl_unet_config(), layers_per_block=1)
    with pytest.raises(ValueError, match="layers per level"): lllite_targets(build_meta_unet(cfg))


# --- module maths -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth,hw,tokens", [(2, (64, 96), 24), (3, (64, 128), 8)])
@pytest.mark.parametrize("s", [1.0, 0.7, -1.5])
def test_module_matches_formula_with_cfg(depth, hw, tokens, s):
    torch.manual_seed(depth)
    org = nn.Linear(40, 40)
    mod = randomize_(LLLiteModule(org, depth, cond_emb_dim=8, network_dim=16, multiplier=s), seed=depth)
    img = torch.rand(2, 3, *hw) * 2 - 1
    x = torch.randn(4, tokens, 40) # N = 2B: CFG layout [uncond B, cond B]
    with torch.no_grad():
        mod.set_cond_image(img)
        out = mod(x)
        want = reference(x, img, mod.state_dict(), depth, org, s)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    # the two halves use the same embedding: swapping them swaps the outputs
    with torch.no_grad(): sw = mod(torch.cat([x[2:], x[:2]]))
    assert torch.equal(sw, torch.cat([out[2:], out[:2]]))

def test_module_cfg_tiling_is_whole_batch_not_interleaved():
    org = nn.Linear(8, 8)
    mod = randomize_(LLLiteModule(org, 2, 4, 4))
    img = torch.rand(2, 3, 16, 16) * 2 - 1 # B=2, 1 token each
    x = torch.randn(1, 1, 8).repeat(4, 1, 1) # the same token in all 4 rows
    with torch.no_grad():
        mod.set_cond_image(img); out = mod(x)
        mod.set_cond_image(img[:1]); o0 = mod(x[:1])
        mod.set_cond_image(img[1:]); o1 = mod(x[:1])
    assert not torch.equal(o0, o1)
    torch.testing.assert_close(out, torch.cat([o0, o1, o0, o1]), rtol=1e-6, atol=1e-6) # [e0, e1, e0, e1]

def test_odd_cond_emb_dim_shapes():
    mod = LLLiteModule(nn.Linear(24, 24), 3, cond_emb_dim=7, network_dim=5)
    sd = mod.state_dict()
    assert sd["conditioning1.0.weight"].shape == (3, 3, 4, 4) and sd["conditioning1.4.weight"].shape == (7, 3, 2, 2)
    assert sd["mid.0.weight"].shape == (5, 12)

def test_passthrough_exact():
    org = nn.Linear(16, 16)
    mod = randomize_(LLLiteModule(org, 2, 4, 8))
    x = torch.randn(2, 4, 16)
    with torch.no_grad():
        assert torch.equal(mod(x), org(x)) # no image
        mod.set_cond_image(torch.rand(2, 3, 32, 32) * 2 - 1)
        assert not torch.equal(mod(x), org(x))
        mod.multiplier = 0.0
        assert torch.equal(mod(x), org(x))
        mod.multiplier = 1.0; mod.set_cond_image(None)
        assert torch.equal(mod(x), org(x))

def test_fresh_module_is_identity_and_up_is_zero():
    org = nn.Linear(16, 16)
    mod = LLLiteModule(org, 3, 4, 8)
    assert torch.count_nonzero(mod.up[0].weight) == 0 and torch.count_nonzero(mod.up[0].bias) == 0
    assert torch.count_nonzero(mod.down[0].bias) > 0 # everything else keeps PyTorch's default init
    mod.set_cond_image(torch.rand(1, 3, 64, 64) * 2 - 1)
    x = torch.randn(1, 4, 16)
    assert torch.equal(mod(x), org(x))

def test_state_dict_has_only_lllite_keys():
    org = nn.Linear(640, 640, bias=False)
    mod = LLLiteModule(org, 2, 32, 64)
    assert not any(k.startswith("org") for k in mod.state_dict())
    assert len(mod.state_dict()) == 10 and sum(p.numel() for p in mod.parameters()) == 97_840

def test_any_size_grid_and_padding_noop_at_32():
    for depth, grid in [(2, (5, 3)), (3, (3, 2))]:
        m = LLLiteModule(nn.Linear(8, 8), depth, 4, 4)
        m.set_cond_image(torch.rand(1, 3, 72, 40) * 2 - 1)
        assert m.cond_grid == grid
    img = torch.rand(1, 3, 64, 96)
    assert pad_to_stride(img, 32) is img

def test_embedding_computed_once_with_grad():
    org = nn.Linear(16, 16).requires_grad_(False)
    mod = LLLiteModule(org, 2, 4, 8)
    calls = []
    mod.conditioning1.register_forward_hook(lambda *a: calls.append(1))
    mod.set_cond_image(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert mod.cond_emb.requires_grad and len(calls) == 1
    for _ in range(3): mod(torch.randn(2, 4, 16))
    assert len(calls) == 1

@pytest.mark.parametrize("reentrant", [True, False])
def test_cfg_tiling_with_grad_and_checkpointing(reentrant):
    "With the embedding under autograd, a checkpointed CFG-batch call (reentrant: its forward without grad) gives the plain call's gradients."
    from torch.utils.checkpoint import checkpoint
    org = nn.Linear(40, 40).requires_grad_(False)
    mod = randomize_(LLLiteModule(org, 2, cond_emb_dim=8, network_dim=16))
    img, x = torch.rand(2, 3, 64, 96) * 2 - 1, torch.randn(4, 24, 40, requires_grad=True)
    grads = []
    for ckpt in (False, True):
        mod.zero_grad(); mod.set_cond_image(img)
        y = checkpoint(mod, x, use_reentrant=reentrant) if ckpt else mod(x)
        y.square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in mod.named_parameters()})
    assert all(grads[0][n].abs().sum() > 0 for n in grads[0])
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])


# --- bad input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("img,err,msg", [
    (torch.zeros(3, 64, 64), ValueError, r"\(B, 3, H, W\), got \(3, 64, 64\)"),
    (torch.zeros(1, 1, 64, 64), ValueError, r"got \(1, 1, 64, 64\)"),
    (torch.full((1, 3, 64, 64), 255.0), ValueError, r"\[-1, 1\], got min 255 max 255"),
    (torch.linspace(0, 2, 3 * 64 * 64).view(1, 3, 64, 64), ValueError, r"max 2"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, r"float tensor.*uint8"),
    (torch.zeros(1, 3, 60, 64), ValueError, r"multiples of 8.*60x64"),
    ([[0.0]], TypeError, r"torch.Tensor, got list"),
])
def test_bad_cond_image(img, err, msg):
    with pytest.raises(err, match=msg): check_cond_image(img)
    mod = LLLiteModule(nn.Linear(8, 8), 2, 4, 4)
    with pytest.raises(err, match=msg): mod.set_cond_image(img)

def test_cond_image_tiny_eps_allowed():
    check_cond_image(torch.full((1, 3, 8, 8), 1.0 + 1e-4))

def test_bad_batch_and_tokens():
    mod = LLLiteModule(nn.Linear(8, 8), 2, 4, 4)
    mod.lllite_name = "lllite_unet_test"
    mod.set_cond_image(torch.zeros(2, 3, 64, 48)) # 4x3 grid
    with pytest.raises(ValueError, match="batch of 3 is not a multiple of the conditioning batch of 2"): mod(torch.zeros(3, 12, 8))
    with pytest.raises(ValueError, match=r"lllite_unet_test: expected a 4x3 token grid \(12 tokens.*got 16 tokens"):
        mod(torch.zeros(2, 16, 8))
    with pytest.raises(ValueError, match=r"\(N, T, 8\)"): mod(torch.zeros(2, 12, 9))

def test_module_refuses_non_linear():
    with pytest.raises(TypeError, match="Conv2d"): LLLiteModule(nn.Conv2d(3, 3, 1), 2, 4, 4)
    with pytest.raises(ValueError, match="depth"): LLLiteModule(nn.Linear(3, 3), 4, 4, 4)


# --- injection on the tiny UNet -----------------------------------------------------------------------------

def test_apply_restore_bit_identical():
    unet = tiny_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    inputs = unet_inputs(hw=(9, 9)) # 72 px: not a multiple of 32
    base = run_unet(unet, inputs)
    net = randomize_(ControlNetLLLite(unet, cond_emb_dim=8, network_dim=16), scale=0.1)
    wrapped = net.apply_to()
    assert len(wrapped) == 40 and all(isinstance(v, nn.Linear) for v in wrapped.values())
    with pytest.raises(RuntimeError, match="already applied"): net.apply_to()
    with torch.no_grad(): net.set_cond_image(torch.rand(1, 3, 72, 72) * 2 - 1)
    assert not torch.equal(run_unet(unet, inputs), base)
    net.set_multiplier(0.0)
    assert torch.equal(run_unet(unet, inputs), base)
    net.multiplier = 0.5
    assert {m.multiplier for m in net.lllite_modules.values()} == {0.5}
    net.set_multiplier(1.0)
    net.restore(); net.restore()
    assert torch.equal(run_unet(unet, inputs), base)
    sd = unet.state_dict()
    assert set(sd) == set(before) and all(torch.equal(sd[k], before[k]) for k in sd)
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in unet.modules())
    assert not any(isinstance(m, LLLiteModule) for m in unet.modules())

def test_injected_equals_module_call():
    "Inside the UNet a wrapped layer computes exactly LLLiteModule.forward on its input."
    unet = tiny_unet()
    net = randomize_(ControlNetLLLite(unet, cond_emb_dim=8, network_dim=16), scale=0.1)
    name = "lllite_unet_middle_block_1_transformer_blocks_1_attn1_to_k"
    mod = net.lllite_modules[name]
    seen = {}
    mod.org_module[0].register_forward_hook(lambda m, a, o: seen.update(x=a[0], out=o))
    net.apply_to()
    with torch.no_grad():
        net.set_cond_image(torch.rand(1, 3, 64, 64) * 2 - 1)
        run_unet(unet, unet_inputs())
        assert torch.equal(mod.org_module[0].forward(seen["x"]), seen["out"])
    net.restore()

def test_network_guide_cast_and_padded_once_per_stride():
    "The network casts the guide once and pads it once per stride; every embedding has the module-alone path's bits."
    net = randomize_(ControlNetLLLite(tiny_unet(), cond_emb_dim=8, network_dim=16), scale=0.1)
    seen = []
    for m in net.lllite_modules.values():
        m.conditioning1.register_forward_pre_hook(lambda mod, args, d=m.depth: seen.append((d, args[0].data_ptr(), args[0].dtype)))
    g = torch.rand(2, 3, 72, 40, dtype=torch.float64) * 2 - 1
    with torch.no_grad(): net.set_cond_image(g)
    assert len(seen) == 40 and {d for d, _, _ in seen} == {2, 3} and {t for _, _, t in seen} == {torch.float32}
    assert len({(d, p) for d, p, _ in seen}) == 2  # one padded tensor per stride
    embs = {n: m.cond_emb for n, m in net.lllite_modules.items()}
    with torch.no_grad():
        for n, m in net.lllite_modules.items():
            m.set_cond_image(g)
            assert torch.equal(m.cond_emb, embs[n]) and m.cond_size == (72, 40), n

def test_grid_matches_unet_at_odd_sizes():
    "248 px crashes kohya (15x15 vs 16x16 at depth 2); we pad and it runs."
    unet = tiny_unet()
    net = ControlNetLLLite(unet, cond_emb_dim=4, network_dim=4)
    net.apply_to()
    for h, w in [(248, 248), (72, 136)]:
        with torch.no_grad(): net.set_cond_image(torch.zeros(1, 3, h, w))
        run_unet(unet, unet_inputs(b=1, hw=(h // 8, w // 8)))
        m2 = net.lllite_modules["lllite_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"]
        m3 = net.lllite_modules["lllite_unet_middle_block_1_transformer_blocks_0_attn1_to_q"]
        assert m2.cond_grid == (-(-h // 16), -(-w // 16)) and m3.cond_grid == (-(-h // 32), -(-w // 32))
    net.restore()

def test_wrong_size_image_names_module():
    unet = tiny_unet()
    net = ControlNetLLLite(unet, cond_emb_dim=4, network_dim=4)
    net.apply_to()
    net.set_cond_image(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="lllite_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q: expected a 8x8"):
        run_unet(unet, unet_inputs(b=1))
    net.restore()

def test_identity_at_init_pipeline():
    pipe = load_pipeline("tiny")
    gen = lambda: pipe("a cat", height=64, width=64, num_inference_steps=2, output_type="np",
                       generator=torch.Generator().manual_seed(0)).images
    plain = gen()
    net = ControlNetLLLite(pipe.unet, cond_emb_dim=8, network_dim=16)
    net.apply_to()
    with torch.no_grad(): net.set_cond_image(torch.rand(1, 3, 64, 64) * 2 - 1)
    controlled = gen()
    randomize_(net, scale=0.1)
    with torch.no_grad(): net.set_cond_image(torch.rand(1, 3, 64, 64) * 2 - 1)
    changed = gen()
    net.restore()
    assert plain.tobytes() == controlled.tobytes()
    assert plain.tobytes() != changed.tobytes() # the test can fail: a trained network does change the image


# --- state dict loading ---------------------------------------------------------------------------------------

def test_load_state_dict_lists_mismatches():
    net = ControlNetLLLite(tiny_unet(), cond_emb_dim=8, network_dim=16)
    sd = net.state_dict()
    k0, k1 = list(sd)[:2]
    bad = dict(sd)
    del bad[k0]
    bad["lllite_unet_bogus.down.0.weight"] = torch.zeros(1)
    bad[k1] = torch.zeros(3)
    with pytest.raises(LLLiteStateDictError) as e: net.load_state_dict(bad)
    msg = str(e.value)
    assert "1 missing keys" in msg and k0 in msg
    assert "1 unexpected keys" in msg and "lllite_unet_bogus.down.0.weight" in msg
    assert "1 wrongly shaped keys" in msg and k1 in msg and "[3]" in msg
    with pytest.raises(LLLiteStateDictError, match="wrongly shaped"): net.load_state_dict(bad, strict=False)
    many = {f"x{i}": torch.zeros(1) for i in range(10)}
    with pytest.raises(LLLiteStateDictError, match=r"10 unexpected keys \(x0, x1, x2, \.\.\.\)"): net.load_state_dict({**sd, **many})
    net.load_state_dict(sd)


# --- weight files ------------------------------------------------------------------------------------------------

from safetensors import safe_open
from safetensors.torch import save_file
from lllite_nb.weights import LLLITE_ARCH, LLLiteFileError, detect_dims, save_weights

@pytest.fixture(scope="module")
def tiny_net():
    unet = tiny_unet()
    return unet, randomize_(ControlNetLLLite(unet, cond_emb_dim=7, network_dim=5), seed=3)

def test_round_trip_fp32_exact_and_fp16_cast(tiny_net, tmp_path):
    unet, net = tiny_net
    net.save(tmp_path / "a.safetensors", dtype=torch.float32)
    back = ControlNetLLLite.from_file(unet, tmp_path / "a.safetensors")
    assert (back.cond_emb_dim, back.network_dim) == (7, 5) # odd c: kohya's 2*conditioning1.0 rule would say 6
    sd, bsd = net.state_dict(), back.state_dict()
    assert list(bsd) == list(sd) and all(torch.equal(bsd[k], sd[k]) for k in sd)
    net.save(tmp_path / "b.safetensors")
    with safe_open(tmp_path / "b.safetensors", "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
        assert all(torch.equal(f.get_tensor(k), sd[k].half()) for k in f.keys())
    b16 = ControlNetLLLite.from_file(unet, tmp_path / "b.safetensors").state_dict()
    assert all(torch.equal(b16[k], sd[k].half().float()) for k in sd)

def test_metadata(tiny_net, tmp_path):
    _, net = tiny_net
    net.save(tmp_path / "m.safetensors", metadata={"modelspec.title": "edges", "modelspec.resolution": "512x512",
                                                   "lllite.network_dim": "999", "steps": 10})
    with safe_open(tmp_path / "m.safetensors", "pt") as f: meta = f.metadata()
    assert meta["modelspec.architecture"] == LLLITE_ARCH == "stable-diffusion-xl-v1-base/control-net-lllite"
    assert meta["modelspec.sai_model_spec"] == "1.0.1"
    assert meta["modelspec.implementation"] == "https://github.com/Stability-AI/generative-models"
    assert (meta["modelspec.title"], meta["modelspec.resolution"], meta["modelspec.prediction_type"]) == ("edges", "512x512", "epsilon")
    assert meta["modelspec.date"][:2] == "20" and "T" in meta["modelspec.date"]
    assert (meta["lllite.cond_emb_dim"], meta["lllite.network_dim"], meta["lllite.num_modules"]) == ("7", "5", "40")
    assert json.loads(meta["lllite.targets"]) == [m.target_name for m in net.lllite_modules.values()]
    assert meta["steps"] == "10"

def test_save_is_atomic(tiny_net, tmp_path, monkeypatch):
    _, net = tiny_net
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old contents")
    def boom(sd, fn, metadata=None):
        Path(fn).write_bytes(b"half a fi"); raise OSError("disk full")
    monkeypatch.setattr("lllite_nb.weights.save_file", boom)
    with pytest.raises(OSError, match="disk full"): net.save(path)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]

def test_from_file_real_sdxl_shapes_on_meta(meta_net, ref, tmp_path):
    "A c32/m64 file for real SDXL: dims detected, loaded strictly on a meta-device UNet."
    meta_net.save(tmp_path / "sdxl.safetensors")
    assert (tmp_path / "sdxl.safetensors").stat().st_size > ref["bytes_fp16"]
    back = ControlNetLLLite.from_file(build_meta_unet(sdxl_unet_config()), tmp_path / "sdxl.safetensors")
    assert (back.cond_emb_dim, back.network_dim) == (32, 64)
    assert {k: list(v.shape) for k, v in back.state_dict().items()} == {r["key"]: r["shape"] for r in ref["keys"]}

def test_from_file_refuses_bad_files(tiny_net, tmp_path):
    unet, net = tiny_net
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        ControlNetLLLite.from_file(unet, tmp_path / "missing.safetensors")
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4)}, tmp_path / "lora.safetensors")
    with pytest.raises(LLLiteFileError, match=r"lora.safetensors is not a ControlNet-LLLite file.*lora_unet_down"):
        ControlNetLLLite.from_file(unet, tmp_path / "lora.safetensors")
    net.save(tmp_path / "ok.safetensors")
    data = (tmp_path / "ok.safetensors").read_bytes()
    for name, blob in [("cut.safetensors", data[: len(data) // 2]), ("head.safetensors", data[:5]), ("empty.safetensors", b"")]:
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(LLLiteFileError, match=name + " is not a readable safetensors file"):
            ControlNetLLLite.from_file(unet, tmp_path / name)
    sd = net.state_dict()
    drop = {k: v for k, v in sd.items() if not k.startswith("lllite_unet_middle_block_1_transformer_blocks_1_attn2_to_q.")}
    save_file(drop, tmp_path / "drop.safetensors")
    with pytest.raises(LLLiteStateDictError, match=r"drop.safetensors: .*12 missing keys \(lllite_unet_middle_block_1_transformer_blocks_1_attn2_to_q"):
        ControlNetLLLite.from_file(unet, tmp_path / "drop.safetensors")
    other = ControlNetLLLite(tiny_unet(), cond_emb_dim=8, network_dim=5) # another c is detected, not assumed
    save_file(dict(other.state_dict()), tmp_path / "c8.safetensors")
    assert ControlNetLLLite.from_file(unet, tmp_path / "c8.safetensors").cond_emb_dim == 8
    bad_conv = dict(sd); k = "lllite_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.conditioning1.0.weight"
    bad_conv[k] = torch.zeros(4, 3, 4, 4) # c//2 should be 3 for c=7
    save_file(bad_conv, tmp_path / "badconv.safetensors")
    with pytest.raises(LLLiteStateDictError, match=r"1 wrongly shaped keys \(" + k + r" \[4, 3, 4, 4\] \(expected \[3, 3, 4, 4\]\)"):
        ControlNetLLLite.from_file(unet, tmp_path / "badconv.safetensors")

def test_detect_dims_inconsistent():
    sd = {"lllite_unet_a.mid.0.weight": torch.zeros(4, 12), "lllite_unet_b.mid.0.weight": torch.zeros(4, 10)}
    with pytest.raises(LLLiteFileError, match="inconsistent"): detect_dims(sd, "x.safetensors")
