"LLLitePipeline and lllite-generate on the tiny model: exactness, step windows, pairing of guides, sizes, errors, CLI."
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file
from torch import nn

from lllite_nb.inject import ControlNetLLLite
from lllite_nb.models import load_pipeline
from lllite_nb.images import prepare_guide
from lllite_nb.inference import LLLitePipeline, control_schedule, kohya_ratio_to_end, visible_network
from lllite_nb.generation import GenerateConfig, generate, main, read_png_parameters

S = 64  # image side for most tests: 8x8 latents


def ring(size=S, flip=False):
    im = Image.new("RGB", (size, size)); ImageDraw.Draw(im).ellipse((size // 5, size // 5, size - 12, size - 20), outline="white", width=3)
    return im.transpose(Image.FLIP_TOP_BOTTOM) if flip else im


@pytest.fixture(scope="module")
def stock():
    return load_pipeline("tiny")


@pytest.fixture
def pipe(stock):
    p = LLLitePipeline.from_pipe(stock); p.set_progress_bar_config(disable=True)
    return p


def gen(p, prompt="a ring", steps=2, size=S, **kw):
    return p(prompt, height=size, width=size, num_inference_steps=steps, output_type="np",
             generator=torch.Generator().manual_seed(0), **kw).images


def test_exact_when_off(stock, pipe):
    base = gen(stock)
    net = pipe.add_lllite(visible_network(pipe.unet))
    on = gen(pipe, image=ring())
    assert np.abs(on - base).max() > 1e-3  # the network does something
    assert np.array_equal(gen(pipe, image=ring(), controlnet_conditioning_scale=0.0), base)
    assert np.array_equal(gen(pipe, image=ring(), control_guidance_start=0.9), base)  # (0.9, 1] holds neither step
    assert np.array_equal(gen(pipe, image=ring(), control_guidance_end=0.4), base)  # [0, 0.4) holds no whole step of 2
    # afterwards the UNet is the stock one and the network is as it was
    assert all(not m._forward_pre_hooks for m in pipe.unet.modules())
    assert not net.applied and net.multiplier == 1.0
    assert all(m.cond_emb is None and m.multiplier == 1.0 for m in net.lllite_modules.values())


def test_exact_with_batches_and_two_networks(stock, pipe):
    kw = dict(num_images_per_prompt=2)
    base = gen(stock, ["a", "b"], **kw)
    pipe.add_lllite(visible_network(pipe.unet, 0)); pipe.add_lllite(visible_network(pipe.unet, 1))
    guides = [[ring(), ring(flip=True)] * 2, ring()]
    assert np.array_equal(gen(pipe, ["a", "b"], image=guides, controlnet_conditioning_scale=[0, 0], **kw), base)
    assert not np.array_equal(gen(pipe, ["a", "b"], image=guides, controlnet_conditioning_scale=[0, 1], **kw), base)


def controlled_steps(pipe, nets, **kw):
    "Per network, the indices of the UNet calls during which (one module of) it is live."
    ms, live = [next(iter(n.lllite_modules.values())) for n in nets], []
    h = pipe.unet.register_forward_pre_hook(lambda mod, args: live.append([m.multiplier != 0 and m.cond_emb is not None for m in ms]))
    try: pipe("x", height=32, width=32, output_type="latent", **kw)
    finally: h.remove()
    return [[i for i, on in enumerate(live) if on[j]] for j in range(len(nets))]


def test_window_steps(pipe):
    a = pipe.add_lllite(visible_network(pipe.unet, 0))
    assert controlled_steps(pipe, [a], image=ring(32), num_inference_steps=10, control_guidance_start=0.2,
                            control_guidance_end=0.7) == [[2, 3, 4, 5, 6]]
    b = pipe.add_lllite(visible_network(pipe.unet, 1))  # per network windows; kohya's ratio 0.2 of 5: on while i/5 <= 0.2
    assert controlled_steps(pipe, [a, b], image=[ring(32), ring(32)], num_inference_steps=5,
                            control_guidance_start=[0.0, 0.6], control_guidance_end=[kohya_ratio_to_end(0.2, 5), 1.0],
                            controlnet_conditioning_scale=[1.0, 0.5]) == [[0, 1], [3, 4]]


def test_schedule_reference():
    assert control_schedule(10, 0.2, 0.7) == [False, False, True, True, True, True, True, False, False, False]
    assert [kohya_ratio_to_end(r, 10) for r in (0, 0.05, 0.1, 0.3, 0.99, 1, 5)] == [0.1, 0.1, 0.2, 0.4, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="start < end"): control_schedule(10, 0.7, 0.2)
    with pytest.raises(ValueError, match=">= 0"): kohya_ratio_to_end(-0.1, 10)


def test_embedding_once_per_generation(pipe):
    net = pipe.add_lllite(visible_network(pipe.unet))
    calls = []
    hooks = [m.conditioning1.register_forward_hook(lambda *a: calls.append(1)) for m in net.lllite_modules.values()]
    try: gen(pipe, image=ring(), steps=4, num_images_per_prompt=2)
    finally:
        for h in hooks: h.remove()
    assert len(calls) == len(net.lllite_modules)  # each module embeds once, not once per step


def test_each_network_sees_its_own_guide(pipe):
    a = pipe.add_lllite(visible_network(pipe.unet, 0)); b = pipe.add_lllite(visible_network(pipe.unet, 1))
    ga, gb, seen = ring(), ring(flip=True), []
    def check(p, i, t, tensors):
        for net, g in ((a, ga), (b, gb)):
            for m in net.lllite_modules.values():
                want = m.conditioning1(prepare_guide(g, S, S)).flatten(2).transpose(1, 2)
                assert torch.allclose(m.cond_emb, want, atol=1e-6), m.lllite_name
        seen.append(i)
        return tensors
    ab = gen(pipe, image=[ga, gb], callback_on_step_end=check)
    assert seen == [0, 1]  # our callback still runs, once per step
    assert not np.array_equal(ab, gen(pipe, image=[gb, ga]))


def test_odd_sizes(pipe):
    net = pipe.add_lllite(visible_network(pipe.unet))
    for w, h in ((120, 88), (40, 56)):  # multiples of 8, not of 16 or 32
        out = pipe("x", image=ring(), width=w, height=h, num_inference_steps=1, output_type="np").images
        assert out.shape == (1, h, w, 3)
    with pytest.raises(ValueError, match="multiples of 8"):
        pipe("x", image=ring(), width=60, height=64, num_inference_steps=1)


def test_guide_errors(pipe):
    with pytest.raises(ValueError, match="no LLLite network is attached"): gen(pipe, image=ring())
    net = pipe.add_lllite(visible_network(pipe.unet))
    with pytest.raises(ValueError, match="no guide `image`"): gen(pipe)
    with pytest.raises(ValueError, match=r"batch of 3 guide images does not match 2 prompt\(s\) x 2"):
        gen(pipe, ["a", "b"], image=[ring()] * 3, num_images_per_prompt=2)
    with pytest.raises(ValueError, match="float pixels must be in"): gen(pipe, image=torch.full((3, S, S), -1.0))
    with pytest.raises(ValueError, match="built on another UNet"): pipe.add_lllite(visible_network(load_pipeline("tiny").unet))
    with pytest.raises(ValueError, match="already attached"): pipe.add_lllite(net)
    pipe.add_lllite(visible_network(pipe.unet, 1))
    with pytest.raises(ValueError, match="2 LLLite networks need `image` as a list of 2"): gen(pipe, image=[ring()] * 3)
    with pytest.raises(ValueError, match="controlnet_conditioning_scale: 3 values for 2"):
        gen(pipe, image=[ring(), ring()], controlnet_conditioning_scale=[1, 1, 1])


def test_cleanup_after_failure(pipe):
    net = visible_network(pipe.unet); net.apply_to()  # applied by the user: stays applied
    other = pipe.add_lllite(visible_network(pipe.unet, 1)); pipe.add_lllite(net)
    def boom(*a): raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"): gen(pipe, image=[ring(), ring()], callback_on_step_end=boom)
    assert net.applied and not other.applied
    assert all(m.cond_emb is None and m.multiplier == 1.0 for n in (net, other) for m in n.lllite_modules.values())
    net.restore()
    assert all(not m._forward_pre_hooks for m in pipe.unet.modules())


# ---- files and the command line


@pytest.fixture(scope="module")
def files(tmp_path_factory, stock):
    d = tmp_path_factory.mktemp("gen")
    visible_network(stock.unet).save(d / "net.safetensors")
    ring().save(d / "guide.png")
    (d / "guides").mkdir(); ring().save(d / "guides" / "a.png"); ring(flip=True).save(d / "guides" / "b.jpg")
    (d / "notes.txt").write_text("not an image")
    save_file({"model.weight": torch.zeros(2, 2)}, str(d / "other.safetensors"))
    return d


def test_cli_round_trip(files, stock, capsys):
    out = files / "out"
    main(["--prompt", "a ring", "--negative_prompt", "blurry", "--control_net_lllite_models", str(files / "net.safetensors"),
          "--guide_image_path", str(files / "guides"), "--control_net_multipliers", "0.8", "--control_net_ratios", "0.5",
          "--W", "64", "--H", "48", "--steps", "2", "--seed", "7", "--outdir", str(out)])
    paths = sorted(out.glob("*.png"))
    assert [p.name for p in paths] == ["00000-7.png", "00001-7.png"]  # one per guide in the folder
    assert str(paths[0]) in capsys.readouterr().out
    text, info = read_png_parameters(paths[1])
    assert text.splitlines()[:2] == ["a ring", "Negative prompt: blurry"]
    assert 'LLLite 0: "model: net.safetensors, guide: b.jpg, multiplier: 0.8, ratio: 0.5"' in text
    assert "Steps: 2, Sampler: EulerDiscreteScheduler, CFG scale: 7.5, Seed: 7, Size: 64x48, Model: tiny" in text
    assert (info["seed"], info["W"], info["H"], info["steps"]) == (7, 64, 48, 2)
    assert json.loads(Image.open(paths[1]).text["lllite_nb"]) == info
    # the same image from Python, with the network read back from the file
    p = LLLitePipeline.from_pipe(stock); p.set_progress_bar_config(disable=True)
    p.add_lllite(files / "net.safetensors")
    want = p("a ring", image=Image.open(files / "guides" / "b.jpg"), negative_prompt="blurry", width=64, height=48,
             num_inference_steps=2, guidance_scale=7.5, controlnet_conditioning_scale=0.8, control_guidance_end=kohya_ratio_to_end(0.5, 2),
             generator=torch.Generator().manual_seed(7)).images[0]
    assert np.array_equal(np.asarray(Image.open(paths[1]).convert("RGB")), np.asarray(want))


def test_cli_errors(files, capsys):
    net, g = str(files / "net.safetensors"), str(files / "guide.png")
    cases = [
        (dict(control_net_lllite_models=[net]), ValueError, "1 --control_net_lllite_models need 1 --guide_image_path"),
        (dict(control_net_lllite_models=[net], guide_image_path=[g], control_net_multipliers=[1, 1]), ValueError,
         "--control_net_multipliers: 2 values for 1"),
        (dict(control_net_lllite_models=[net], guide_image_path=[g], control_net_ratios=[1, 1]), ValueError,
         "--control_net_ratios: 2 values for 1"),
        (dict(control_net_lllite_models=[str(files / "nope.safetensors")], guide_image_path=[g]), FileNotFoundError,
         "nope.safetensors does not exist"),
        (dict(control_net_lllite_models=[net], guide_image_path=[str(files / "nope.png")]), FileNotFoundError,
         "nope.png does not exist"),
        (dict(control_net_lllite_models=[net], guide_image_path=[str(files / "notes.txt")]), ValueError,
         "cannot read guide image .*notes.txt: not a picture"),
        (dict(control_net_lllite_models=[str(files / "other.safetensors")], guide_image_path=[g]), ValueError,
         "not a ControlNet-LLLite file"),
        (dict(control_net_lllite_models=[str(files / "notes.txt")], guide_image_path=[g]), ValueError,
         "not a readable safetensors file"),
        (dict(preprocess="sobel"), ValueError, "unknown, choose from"),
    ]
    for kw, err, msg in cases:
        with pytest.raises(err, match=msg.replace("(", r"\(")): generate(GenerateConfig(steps=1, W=32, H=32, outdir=str(files / "x"), **kw))
    with pytest.raises(SystemExit) as e: main(["--control_net_lllite_models", net])
    assert e.value.code == 1 and "lllite-generate: error: 1 --control_net_lllite_models need 1" in capsys.readouterr().err


def test_cli_preprocess_and_plain(files):
    photo = Image.new("RGB", (64, 64), (40, 80, 200)); ImageDraw.Draw(photo).rectangle((16, 16, 48, 48), fill=(230, 200, 40))
    photo.save(files / "photo.png")
    main(["--prompt", "x", "--control_net_lllite_models", str(files / "net.safetensors"), "--guide_image_path",
          str(files / "photo.png"), "--preprocess", "canny", "--W", "32", "--H", "32", "--steps", "1", "--seed", "1",
          "--outdir", str(files / "pre")])
    main(["--prompt", "x", "--W", "32", "--H", "32", "--steps", "1", "--outdir", str(files / "plain")])  # no model: stock
    (p,), (q,) = list((files / "pre").glob("*.png")), list((files / "plain").glob("*.png"))
    assert read_png_parameters(p)[1]["preprocess"] == "canny" and read_png_parameters(q)[1]["lllite"] == []
