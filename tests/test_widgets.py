"lllite_nb.widgets: the pure functions (shapes, exact values) and the widgets driven through their controls."
import datetime, itertools

import ipywidgets
import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image

from lllite_nb.images import canny
from lllite_nb.inference import LLLitePipeline
from lllite_nb.inject import ControlNetLLLite
from lllite_nb.models import build_meta_unet, load_pipeline, sdxl_unet_config
from lllite_nb.probe import (GROUPS, ModuleKey, channel_grid, conditioning_maps, diff_map, effects_grid, generate_groups,
                             guide_batch, module_effects, module_keys, pca_rgb, record_residuals, set_groups, unet_inputs)
from lllite_nb.widgets import (EffectsWidget, EmbeddingViewer, InferenceWidget, fig_to_png, generate_image, image_png,
                               module_options, plot_conditioning, plot_effects, sample_guides)

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def pipe():
    p = LLLitePipeline.from_pipe(load_pipeline("tiny")); p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def guides(root):
    return sample_guides(root / "data_samples")


@pytest.fixture(scope="module")
def guide(guides):
    return guides["train/0000"]


def acting(net, std=0.5, seed=0):
    "Noise in every `up` layer, so that every module acts (a trained network's situation)."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.lllite_modules.values(): m.up[0].weight.normal_(0, std, generator=g)
    return net


@pytest.fixture(scope="module")
def net(pipe):
    return acting(ControlNetLLLite(pipe.unet))


@pytest.fixture(scope="module")
def sdxl_net():
    return ControlNetLLLite(build_meta_unet(sdxl_unet_config()))


def plain_image(pipe, steps=4, size=64, seed=0):
    return StableDiffusionXLPipeline.__call__(pipe, PROMPT, height=size, width=size, num_inference_steps=steps,
                                              guidance_scale=5.0, generator=torch.Generator().manual_seed(seed)).images[0]


# --- layout ---------------------------------------------------------------------------------------------------------

def test_module_keys_tiny(net):
    keys = module_keys(net)
    assert {k.name for k in keys} == set(net.lllite_modules)
    want = {(b, l, p, 2 if b in ("in4", "in5") else 3)
            for b, l, p in itertools.product(GROUPS["blocks"], (0, 1), ("q", "k", "v", "attn2-q"))}
    assert {k[1:] for k in keys} == want and len(keys) == 40
    assert keys[0] == ModuleKey("lllite_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", "in4", 0, "q", 2)
    assert keys[-1] == ModuleKey("lllite_unet_middle_block_1_transformer_blocks_1_attn2_to_q", "mid", 1, "attn2-q", 3)
    assert module_options(net)[-1] == ("depth 3 (1/4 latent) · mid · layer 1 · attn2-q", keys[-1].name)


def test_module_keys_and_grid_sdxl(sdxl_net):
    keys = module_keys(sdxl_net)
    assert len(keys) == 136
    per_block = {b: sum(k.block == b for k in keys) for b in GROUPS["blocks"]}
    assert per_block == dict(in4=8, in5=8, in7=40, in8=40, mid=40)
    assert sum(k.depth == 2 for k in keys) == 16 and sum(k.depth == 3 for k in keys) == 120
    a, blocks, projs = effects_grid({k.name: float(i) for i, k in enumerate(keys)}, sdxl_net)
    assert a.shape == (4, 5, 10) and blocks == list(GROUPS["blocks"]) and projs == ["q", "k", "v", "attn2-q"]
    assert np.isnan(a[:, :2, 2:]).all() and not np.isnan(a[:, 2:]).any() and not np.isnan(a[:, :2, :2]).any()
    k = next(k for k in keys if (k.block, k.layer, k.proj) == ("in8", 7, "v"))
    assert a[2, 3, 7] == keys.index(k)


# --- conditioning embedding -----------------------------------------------------------------------------------------

def test_conditioning_maps_match_module_embedding(net, guide):
    for k, shapes in ((module_keys(net)[0], [(16, 32, 32), (32, 8, 8)]),
                      (module_keys(net)[-1], [(16, 32, 32), (16, 8, 8), (32, 4, 4)])):
        m = net.lllite_modules[k.name]
        maps = conditioning_maps(m, guide)
        assert [tuple(t.shape) for _, t in maps] == shapes
        assert all((t >= 0).all() for _, t in maps[:-1]) # after ReLU
        with torch.no_grad(): m.set_cond_image(guide_batch(guide))
        c, h, w = shapes[-1]
        assert torch.equal(maps[-1][1], m.cond_emb[0].T.reshape(c, h, w))
        m.set_cond_image(None)


def test_conditioning_from_file(net, pipe, guide, tmp_path):
    net.save(tmp_path / "n.safetensors", dtype=torch.float32)
    loaded = ControlNetLLLite.from_file(pipe.unet, tmp_path / "n.safetensors")
    name = module_keys(net)[-1].name
    for (_, a), (_, b) in zip(conditioning_maps(net.lllite_modules[name], guide),
                              conditioning_maps(loaded.lllite_modules[name], guide)):
        assert torch.equal(a, b)


def test_conditioning_sdxl_geometry(sdxl_net, guide):
    big, keys = guide.resize((1024, 1024)), module_keys(sdxl_net)
    assert [tuple(t.shape) for _, t in conditioning_maps(sdxl_net.lllite_modules[keys[0].name], big)] == \
        [(16, 256, 256), (32, 64, 64)]
    fig = plot_conditioning(sdxl_net.lllite_modules[keys[-1].name], big)
    assert fig.axes[-1].texts[0].get_text() == "32×32 tokens" and len(fig.axes) == 5


def test_channel_grid_values():
    f = torch.tensor([[[0., 1.], [2., 3.]], [[5., 5.], [5., 5.]], [[-1., 0.], [0., 1.]]])
    g = channel_grid(f, ncols=2, pad=1)
    want = np.full((5, 5), np.nan)
    want[:2, :2] = [[0, 1 / 3], [2 / 3, 1]]; want[:2, 3:] = 0; want[3:, :2] = [[0, .5], [.5, 1]]
    np.testing.assert_allclose(g, want)


def test_pca_rgb_values():
    emb = torch.zeros(4, 2, 2); emb[1] = torch.tensor([[0., 1.], [2., 4.]])
    rgb = pca_rgb(emb)
    p = np.array([-1.75, -0.75, 0.25, 2.25]) / 2.25 # one component; the strongest token is positive
    np.testing.assert_allclose(rgb[..., 0].ravel(), (p + 1) / 2, atol=1e-12)
    assert (rgb[..., 1:] == 0.5).all()
    assert (pca_rgb(-emb)[..., 0] == rgb[..., 0]).all() # sign convention: colours do not flip
    assert (pca_rgb(torch.full((3, 2, 2), 7.0)) == 0.5).all()


def test_guide_batch(guide):
    g = guide_batch(guide)
    assert g.shape == (1, 3, 128, 128) and g.min() == -1 and g.max() == 1
    assert guide_batch(guide, 64, 32).shape == (1, 3, 32, 64)
    assert guide_batch(g) is g
    with pytest.raises(ValueError, match="expected 64x64"): guide_batch(g, 64, 64)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"): guide_batch(g * 3)


# --- per-module effects ---------------------------------------------------------------------------------------------

def test_effects_zero_for_fresh_network(pipe, guide):
    fresh = ControlNetLLLite(pipe.unet)
    eff = module_effects(pipe, fresh, guide, 500, PROMPT)
    assert set(eff) == set(fresh.lllite_modules) and set(eff.values()) == {0.0}
    assert "exactly 0" in plot_effects(eff, fresh).get_suptitle()


def test_effects_match_a_direct_computation(pipe, net, guide):
    set_groups(net)
    k = module_keys(net)[5]
    m, seen = net.lllite_modules[k.name], []
    net.apply_to()
    h = m.org_module[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()), prepend=True)
    try: eff = module_effects(pipe, net, guide, 300, PROMPT)
    finally: h.remove(); net.restore()
    with torch.no_grad():
        m.set_cond_image(guide_batch(guide, 64, 64)); r = m.residual(seen[0]); m.set_cond_image(None)
    assert len(seen) == 1 and eff[k.name] == pytest.approx(float(r.norm() / seen[0].norm()), rel=1e-6)
    assert all(v > 0 for v in eff.values())
    assert module_effects(pipe.unet, net, guide, 300, inputs=unet_inputs(pipe, PROMPT)) == eff
    assert not net.applied and all(mm.cond_emb is None and "residual" not in vars(mm) for mm in net.lllite_modules.values())
    with pytest.raises(ValueError, match="pass `inputs`"): module_effects(pipe.unet, net, guide)


def test_set_groups(net):
    count = lambda **kw: sum(v != 0 for v in set_groups(net, **kw).values())
    assert [count(), count(attn=["attn1"]), count(attn=["attn2"]), count(proj=["q"]), count(proj=["kv"]),
            count(depths=[2]), count(depths=[3]), count(blocks=["in7", "mid"]), count(blocks=[])] == \
        [40, 30, 10, 20, 20, 16, 24, 16, 0]
    assert count(attn=["attn1"], proj=["q"], blocks=["mid"]) == 2
    mults = set_groups(net, proj=["kv"], scale=0.5)
    assert {n: m.multiplier for n, m in net.lllite_modules.items()} == mults
    assert {n for n, v in mults.items() if v == 0.5} == {n for n in mults if n.endswith(("attn1_to_k", "attn1_to_v"))}
    with pytest.raises(ValueError, match="choose from"): set_groups(net, depths=[1])
    set_groups(net)


def test_effects_of_switched_off_groups_are_zero(pipe, net, guide):
    set_groups(net, blocks=["in7", "in8"], attn=["attn1"])
    eff = module_effects(pipe, net, guide, 700, PROMPT)
    on = {k.name for k in module_keys(net) if k.block in ("in7", "in8") and k.proj != "attn2-q"}
    assert all((v > 0) == (n in on) for n, v in eff.items()) and len(on) == 12
    a, _, _ = effects_grid(eff, net)
    assert (a[3] == 0).all() and (a[:3, 2:4] > 0).all() and (a[:, [0, 1, 4]] == 0).all()
    set_groups(net)


def test_all_groups_off_is_the_uncontrolled_image(pipe, net, guide):
    plain = np.asarray(plain_image(pipe))
    set_groups(net, blocks=[])
    assert np.array_equal(np.asarray(generate_groups(pipe, net, PROMPT, guide)), plain)
    set_groups(net)
    full = np.asarray(generate_groups(pipe, net, PROMPT, guide))
    assert not np.array_equal(full, plain)
    pipe.add_lllite(net)
    try:
        assert np.array_equal(np.asarray(generate_image(pipe, PROMPT, guide)), full) # same maths, the pipeline's way
        assert np.array_equal(np.asarray(generate_image(pipe, PROMPT, guide, scale=0.0)), plain)
    finally: pipe.remove_lllite(net)


def test_diff_map():
    a = Image.fromarray(np.zeros((4, 6, 3), np.uint8)); b = np.zeros((4, 6, 3), np.uint8); b[1, 2] = (255, 0, 51)
    d = diff_map(a, Image.fromarray(b))
    assert d.shape == (4, 6) and d[1, 2] == pytest.approx(0.4) and d.sum() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="sizes differ"): diff_map(a, Image.new("RGB", (4, 4)))


def test_record_residuals_restores_methods(net, guide):
    m = next(iter(net.lllite_modules.values()))
    with record_residuals(net) as log: assert "residual" in vars(m)
    assert "residual" not in vars(m) and set(log) == set(net.lllite_modules) and not any(log.values())


# --- widgets: set .value on the controls, press Run ---------------------------------------------------------------

def test_embedding_viewer(net, guides):
    v = EmbeddingViewer(net, guides)
    first = bytes(v.image.value)
    assert first[:4] == b"\x89PNG" and v.module.value == module_keys(net)[0].name
    last = module_keys(net)[-1].name
    v.module.value = last
    v.guide.value = "holdout/0002"
    assert bytes(v.image.value) != first
    assert bytes(v.image.value) == fig_to_png(plot_conditioning(net.lllite_modules[last], guides["holdout/0002"], last))


def test_effects_widget(pipe, net, guides):
    set_groups(net)
    w = EffectsWidget(pipe, net, guides, size=64, steps=2, prompt=PROMPT)
    w.guide.value = "train/0000"
    w.button.click()
    first = bytes(w.effects_image.value)
    assert w.status.value == "40/40 modules on" and all(v > 0 for v in w.result["effects"].values())
    assert w.progress.value == w.progress.max == 2
    for cb in w.groups["depths"].values(): cb.value = False
    w.button.click()
    assert bytes(w.effects_image.value) != first and w.status.value == "0/40 modules on"
    assert set(w.result["effects"].values()) == {0.0}
    imgs = w.result["images"]
    assert np.array_equal(np.asarray(imgs["selected modules"]), np.asarray(imgs["no control"]))
    assert np.array_equal(np.asarray(imgs["no control"]), np.asarray(plain_image(pipe, steps=2)))
    w.groups["depths"][3].value = True
    w.groups["proj"]["kv"].value = False
    w.run()
    on = {n for n, v in w.result["multipliers"].items() if v}
    assert on == {k.name for k in module_keys(net) if k.depth == 3 and k.proj in ("q", "attn2-q")}
    assert w.result["images"]["|selected − no control|"].max() > 0
    set_groups(net)



def upload(widget, name: str, data: bytes):
    "Give a FileUpload a file as the browser does: ipywidgets 8 sets `value`, ipywidgets 7 `metadata`, `data` and a counter."
    if int(ipywidgets.__version__.split(".")[0]) >= 8:
        widget.value = ({"name": name, "type": "image/png", "size": len(data),
                         "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc), "content": memoryview(data)},)
    else:
        widget.metadata, widget.data = [{"name": name, "type": "image/png", "size": len(data), "lastModified": 0}], [data]
        widget._counter += 1
def test_inference_widget(pipe, net, guides):
    pipe.add_lllite(net)
    try:
        w = InferenceWidget(pipe, guides, size=64, steps=2, prompt=PROMPT)
        w.guide.value = "train/0003"
        p0 = bytes(w.preview.value)
        w.use_canny.value = True; w.thresholds.value = (30, 90)
        assert bytes(w.preview.value) != p0 and bytes(w.preview.value) == image_png(canny(guides["train/0003"], 30, 90))
        w.button.click()
        out = list(w.result["images"].values())
        assert w.status.value == "done" and out[2].max() > 0
        assert np.array_equal(np.asarray(out[1]), np.asarray(plain_image(pipe, steps=2)))
        first = bytes(w.images.value)
        w.strength.value = 0.0; w.button.click()
        assert bytes(w.images.value) != first and list(w.result["images"].values())[2].max() == 0
        w.window.value = (0.4, 0.4); w.button.click()
        assert w.status.value.startswith("error: control window")
        up = Image.new("RGB", (96, 96), (0, 0, 0)); up.paste((255, 255, 255), (20, 20, 70, 70))
        upload(w.upload, "box.png", image_png(up))
        assert w.guide.value == "upload: box.png" and "upload: box.png" in w.guide.options
        assert bytes(w.preview.value) == image_png(canny(up, 30, 90))
    finally: pipe.remove_lllite(net)
