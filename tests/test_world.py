"The tiny world: shipped weights load strictly, the analyser reads shapes, agreement metrics, pretraining learns."
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lllite_nb.shapes import (SHAPES, analyse_shapes, caption_agreement, draw_shapes_sample, edge_f1, evaluate_control, mask_iou,
                              render_shapes)
from lllite_nb.images import canny
from lllite_nb.models import (TINY_WEIGHT_FILES, TINY_WEIGHTS_DIR, TinySDXLConfig, load_tiny_weights, tiny_pipeline,
                              tiny_text_encoders, tiny_unet, tiny_vae)
from lllite_nb.world import WorldConfig, resumable_loop, step_generator, train_unet, train_vae, unet_loss, world_pool
from lllite_nb.models import noise_scheduler


def _parts(pretrained):
    te1, te2 = tiny_text_encoders(pretrained=pretrained)
    return dict(unet=tiny_unet(pretrained=pretrained), vae=tiny_vae(pretrained=pretrained), text_encoder=te1, text_encoder_2=te2)


def test_shipped_weights_load_strictly():
    files = {p: TINY_WEIGHTS_DIR / f for p, f in TINY_WEIGHT_FILES.items()}
    assert all(f.exists() for f in files.values()), files
    assert sum(f.stat().st_size for f in TINY_WEIGHTS_DIR.iterdir()) <= 25 * 2**20  # all shipped weights, demo network too
    random, shipped = _parts(False), _parts(True)
    for part, model in random.items():
        assert load_tiny_weights(model, part) is True
        for (k, a), (k2, b) in zip(model.state_dict().items(), shipped[part].state_dict().items()):
            assert k == k2 and torch.equal(a, b), (part, k)
    # the shipped UNet is not the random one, and the pipeline carries the shipped parts
    assert not torch.equal(tiny_unet(pretrained=False).conv_in.weight, shipped["unet"].conv_in.weight)
    assert torch.equal(tiny_pipeline().unet.conv_out.weight, shipped["unet"].conv_out.weight)


def test_shipped_weights_refuse_other_sizes():
    other = tiny_unet(cfg=TinySDXLConfig(block_out_channels=(16, 32, 64)), pretrained=False)
    with pytest.raises(ValueError, match="unet.safetensors does not fit"):
        load_tiny_weights(other, "unet")
    assert load_tiny_weights(other, "unet", folder=TINY_WEIGHTS_DIR / "missing") is False


def test_analyser_reads_drawn_shapes():
    cases = [(s, c, bg) for s in SHAPES for c, bg in [("red", "white"), ("blue", "yellow"), ("black", "grey"), ("pink", "green")]]
    for i, (s, c, bg) in enumerate(cases):
        meta = dict(size=128, background=[bg], split=None, split_at=64,
                    shapes=[dict(shape=s, colour=c, center=[50.0 + 2 * i, 70.0 - i], radius=16.0 + 5 * (i % 4))])
        found = analyse_shapes(render_shapes(meta))
        assert [(o["colour"], o["shape"]) for o in found["shapes"]] == [(c, s)], (s, c, bg)
        assert found["background"] == [bg]
        assert caption_agreement(found, meta) == dict(colour=True, shape=True, both=True)
    # two-tone background, two shapes: both found, largest first
    meta = dict(size=128, background=["grey", "white"], split="vertical", split_at=64,
                shapes=[dict(shape="star", colour="red", center=[38.0, 40.0], radius=30.0),
                        dict(shape="circle", colour="blue", center=[92.0, 90.0], radius=18.0)])
    found = analyse_shapes(render_shapes(meta))
    assert [(o["colour"], o["shape"]) for o in found["shapes"]] == [("red", "star"), ("blue", "circle")]
    assert sorted(found["background"]) == ["grey", "white"]


def _pairs(n=2):
    return [(img, canny(img), cap) for img, cap, _ in (draw_shapes_sample(np.random.default_rng([1, i])) for i in range(n))]


def test_agreement_metrics():
    img, guide, _ = _pairs(1)[0]
    blank = Image.new("RGB", img.size, "grey")
    assert edge_f1(guide, img) == 1.0 and edge_f1(guide, blank) == 0.0
    shifted = Image.fromarray(np.roll(np.asarray(img), 12, axis=1))
    assert 0 < edge_f1(guide, shifted) < 1
    # a guide of another size is resized to the picture's first: the half-size picture still matches its guide
    assert edge_f1(guide, img.resize((64, 64))) > 0.9 and edge_f1(guide, shifted.resize((64, 64))) < 0.9
    assert edge_f1(guide.resize((64, 64)), img) > 0.5 and edge_f1(guide, blank.resize((64, 64))) == 0.0
    m = analyse_shapes(img)["mask"]
    assert mask_iou(m, m) == 1.0 and mask_iou(m, np.zeros_like(m)) == 0.0


def test_evaluate_control_with_a_stand_in_pipeline():
    pairs = _pairs(2)
    calls = []
    def pipe(prompts, image, controlnet_conditioning_scale, generator, **kw):  # the picture with control, grey without
        calls.append((list(prompts), controlnet_conditioning_scale, len(generator)))
        ims = [p for p, _, _ in pairs] if controlnet_conditioning_scale else [Image.new("RGB", (128, 128), "grey")] * 2
        return SimpleNamespace(images=ims)
    r = evaluate_control(pipe, pairs, seeds=(0, 1))
    assert (r["with"]["edge_f1"], r["with"]["mask_iou"]) == (1.0, 1.0)
    assert (r["without"]["edge_f1"], r["without"]["mask_iou"]) == (0.0, 0.0)
    assert len(r["with"]["images"]) == 4 and [c[1] for c in calls] == [0.0, 0.0, 1.0, 1.0]


def test_evaluate_control_strength_argument_and_arms():
    pairs = _pairs(2)
    calls = []
    def pipe(prompts, image, adapter_conditioning_scale, generator, **kw):  # an adapter pipeline's strength name
        calls.append(adapter_conditioning_scale); assert "controlnet_conditioning_scale" not in kw
        return SimpleNamespace(images=[p for p, _, _ in pairs])
    r = evaluate_control(pipe, pairs, seeds=(0,), scale_arg="adapter_conditioning_scale", arms=(("half", 0.5),))
    assert set(r) == {"half"} and calls == [0.5] and (r["half"]["edge_f1"], r["half"]["mask_iou"]) == (1.0, 1.0)


def test_resumable_loop_resumes_exactly(tmp_path):
    def run(steps, ckpt):
        torch.manual_seed(0); lin = torch.nn.Linear(3, 1); opt = torch.optim.SGD(lin.parameters(), 0.1)
        def step(s):
            x = torch.randn(4, 3, generator=step_generator(0, s)); loss = lin(x).pow(2).mean()
            opt.zero_grad(); loss.backward(); opt.step(); return loss.item()
        return resumable_loop(step, dict(lin=lin, opt=opt), steps, ckpt, save_every=2, show=False), lin
    whole, lin_a = run(6, None)
    run(4, tmp_path / "s.pt")
    resumed, lin_b = run(6, tmp_path / "s.pt")
    assert resumed["resumed_at"] == 4 and resumed["losses"] == whole["losses"]
    assert torch.equal(lin_a.weight, lin_b.weight)


def test_pretraining_smoke_reduces_loss():
    torch.set_num_threads(1)
    cfg = WorldConfig(vae_steps=8, vae_batch=4, vae_crop=32, unet_steps=8, unet_batch=4, warmup_steps=1,
                      caption_dropout=0.0, size=64, vae_lr=3e-3, unet_lr=2e-3)
    imgs, _, _ = world_pool(4, size=64)
    vae = tiny_vae(pretrained=False)
    log = train_vae(vae, imgs, cfg, show=False)
    assert np.mean(log["losses"][-3:]) < np.mean(log["losses"][:3])
    # the UNet on one fixed batch of 4 latents: the loss at fixed noise goes down
    unet, sched = tiny_unet(pretrained=False, cfg=TinySDXLConfig(sample_size=64)), noise_scheduler()
    lat, emb, pooled = torch.randn(4, 4, 8, 8), torch.randn(4, 77, 64), torch.randn(4, 32)
    tid = torch.tensor([[64, 64, 0, 0, 64, 64]] * 4, dtype=torch.float32)
    fixed = lambda: unet_loss(unet.eval(), sched, lat, emb, pooled, tid, torch.Generator().manual_seed(9), 0.0, None).item()
    before = fixed()
    train_unet(unet, lat, emb, pooled, cfg, show=False)
    assert fixed() < before


def test_shipped_model_draws_its_captions():
    # the first 16 captions of the quality gate (measured on 100: 67% agree in colour and kind, random weights: ~0%)
    torch.set_num_threads(1)
    from lllite_nb.world import quality_gate
    shipped = quality_gate(tiny_pipeline(), n=16, batch=8)
    random = quality_gate(tiny_pipeline(pretrained=False), n=8, batch=8, steps=5)
    assert shipped["rates"]["both"] >= 0.5, shipped["rates"]
    assert random["rates"]["both"] <= 0.25, random["rates"]
