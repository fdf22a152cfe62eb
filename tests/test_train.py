"The trainer: learning, checkpoints and their names, resume equality, caching, samples, errors (tiny model, 64 px)."
import json, math
from pathlib import Path

import pytest
import torch
from PIL import Image

from lllite_nb.dataset import load_train_dataset, make_dataloader
from lllite_nb.inject import ControlNetLLLite
from lllite_nb.models import load_pipeline, tiny_pipeline
from lllite_nb.fit import ckpt_name, main, parse_args, parse_sample_prompts, train
from lllite_nb.models import encode_latents, encode_text, noise_scheduler, sdxl_time_ids
from lllite_nb.trainer import TrainConfig, TrainConfigError, TrainingDivergedError, check_config
from lllite_nb.training import LLLiteUNet, draw_noise, snr_weights, training_loss
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data_samples"
DIRS = dict(train_data_dir=str(DATA / "train/images"), conditioning_data_dir=str(DATA / "train/conditioning"), caption_extension=".txt")
GUIDE = DATA / "holdout/conditioning/0000.png"


def tiny_cfg(out, **kw) -> TrainConfig:
    "Small and fast: 64 px, c=8, m=16, batch 4 (10 batches per epoch), no bars."
    base = dict(DIRS, resolution="64", train_batch_size=4, cond_emb_dim=8, network_dim=16, learning_rate=1e-3,
                max_train_steps=4, output_dir=str(out), progress=False)
    return TrainConfig(**{**base, **kw})


def read_sd(path) -> dict:
    from lllite_nb.weights import read_weights
    return read_weights(path)[0]


# ---------------------------------------------------------------- pieces

def test_noise_schedule_and_snr():
    s = noise_scheduler()
    assert s.config.num_train_timesteps == 1000 and s.config.beta_schedule == "scaled_linear"
    torch.testing.assert_close(s.betas[[0, -1]], torch.tensor([0.00085, 0.012]))
    t = torch.tensor([0, 500, 999])
    ac = s.alphas_cumprod[t]
    snr = ac / (1 - ac)
    torch.testing.assert_close(snr_weights(s, t, 5.0), snr.clamp(max=5) / snr)
    torch.testing.assert_close(snr_weights(s, t, 5.0, v_prediction=True), snr.clamp(max=5) / (snr + 1))
    assert noise_scheduler(True).config.prediction_type == "v_prediction"


def test_draw_noise_is_seeded_and_offset_is_per_channel():
    lat = torch.zeros(3, 4, 8, 8)
    a, ta = draw_noise(lat, torch.Generator().manual_seed(5))
    b, tb = draw_noise(lat, torch.Generator().manual_seed(5), noise_offset=0.5)
    assert ta.shape == (3,) and ta.min() >= 0 and ta.max() < 1000 and ta.dtype == torch.int64
    c, _ = draw_noise(lat, torch.Generator().manual_seed(5))
    assert torch.equal(a, c)
    d = b - a  # the offset: constant over h, w for each (sample, channel)
    assert torch.allclose(d, d[..., :1, :1].expand_as(d)) and d.abs().max() > 0


def test_timestep_range_follows_kohyas_flags():
    lat = torch.zeros(4000, 1, 1, 1)
    _, t = draw_noise(lat, torch.Generator().manual_seed(0), min_timestep=500, max_timestep=600)
    assert t.min() == 500 and t.max() == 599  # [min, max), every value drawn at 4000 samples
    _, t0 = draw_noise(lat, torch.Generator().manual_seed(0))
    _, t1 = draw_noise(lat, torch.Generator().manual_seed(0), min_timestep=0, max_timestep=None)
    assert torch.equal(t0, t1) and t0.min() == 0 and t0.max() == 999  # defaults: the whole range, same draws
    for lo, hi in ((700, 500), (-1, None), (0, 1001), (1000, None)):
        with pytest.raises(TrainConfigError, match="--min_timestep"):
            check_config(TrainConfig(train_data_dir="x", conditioning_data_dir="y", min_timestep=lo, max_timestep=hi))


def test_time_ids_match_the_pipeline():
    pipe = load_pipeline("tiny")
    o, c, t = torch.tensor([[100, 120], [64, 64]]), torch.tensor([[3, 5], [0, 0]]), torch.tensor([[64, 64], [64, 64]])
    ids = sdxl_time_ids(o, c, t)
    for i in range(2):
        ref = pipe._get_add_time_ids(tuple(o[i].tolist()), tuple(c[i].tolist()), tuple(t[i].tolist()), dtype=torch.float32,
                                     text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        assert torch.equal(ids[i:i + 1], ref)


def test_names_are_kohyas():
    assert ckpt_name("x", step=12) == "x-step00000012" and ckpt_name("x", epoch=2) == "x-000002" and ckpt_name("x") == "x"
    assert (ckpt_name(None, step=1), ckpt_name(None, epoch=1), ckpt_name(None)) == ("at-step00000001", "epoch-000001", "last")


def test_sample_prompt_file(tmp_path):
    p = tmp_path / "prompts.txt"
    p.write_text(f"# comment\n\na cat --cn {GUIDE} --d 7 --s 3 --l 4.5 --w 64 --h 128 --n ugly\nplain --am 1\n")
    with pytest.warns(UserWarning, match="--am"): sps = parse_sample_prompts(p)
    assert [(s.prompt, s.guide, s.seed, s.steps, s.scale, s.width, s.height, s.negative_prompt) for s in sps] == [
        ("a cat", str(GUIDE), 7, 3, 4.5, 64, 128, "ugly"), ("plain", None, None, 30, 7.5, None, None, "")]
    (tmp_path / "g.png").write_bytes(GUIDE.read_bytes())
    p.write_text("rel --cn g.png\n")  # relative to the prompt file
    assert parse_sample_prompts(p)[0].guide == str(tmp_path / "g.png")
    p.write_text("x --cn nowhere.png\n")
    with pytest.raises(FileNotFoundError, match="nowhere.png"): parse_sample_prompts(p)
    p.write_text("x --d seven\n")
    with pytest.raises(ValueError, match="--d expects int"): parse_sample_prompts(p)


# ---------------------------------------------------------------- a real run

def fixed_eval_loss(pipe, network, batch) -> float:
    "Loss on one batch at fixed noise and timesteps (3 draws), so that before/after compare the same thing."
    lat = encode_latents(pipe.vae, batch["image"])
    emb, pooled = encode_text(pipe, batch["caption"])
    ids = sdxl_time_ids(batch["original_size"], batch["crop_top_left"], batch["target_size"])
    model, sched, g, total = LLLiteUNet(pipe.unet, network).eval(), noise_scheduler(), torch.Generator().manual_seed(123), 0.0
    network.apply_to()
    try:
        with torch.no_grad():
            for _ in range(3):
                noise, t = draw_noise(lat, g)
                total += training_loss(model, sched, lat, batch["conditioning_image"], emb, pooled, ids, noise, t).item()
    finally: network.restore()
    return total / 3


def test_training_learns_and_writes_kohya_files(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"a red circle --cn {GUIDE} --d 1 --s 2\na blue star --d 2 --s 2\n")
    cfg = tiny_cfg(tmp_path, max_train_steps=24, learning_rate=1e-2, output_name="t", save_every_n_steps=10,
                   save_every_n_epochs=1, sample_prompts=str(prompts), sample_every_n_steps=12)
    # the shipped tiny model already predicts the noise well (loss ~0.07 at 64 px), so 24 steps cannot show learning
    # clearly on it; its seeded random-weight twin (loss ~1.09) does: the trainer's gradients must reach the network
    pipe = tiny_pipeline(pretrained=False)
    res = train(cfg, pipe=pipe)
    assert res.steps == 24 and len(res.losses) == 24 and all(math.isfinite(x) for x in res.losses)
    assert res.epochs == pytest.approx(2.4)
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors")
    assert names == ["t-000001.safetensors", "t-000002.safetensors", "t-step00000010.safetensors",
                     "t-step00000020.safetensors", "t.safetensors"]
    assert res.weights_path == tmp_path / "t.safetensors" and res.loss_plot == tmp_path / "t-loss.png" and res.loss_plot.is_file()
    assert [p.name for p in res.samples] == ["t-step00000012.png", "t-step00000024.png"]
    with Image.open(res.samples[0]) as im: assert im.size == (128, 128)  # 2 rows of guide | output at 64 px
    # the file reloads strictly, with every key of a fresh network, and the up layers have left zero
    fresh = ControlNetLLLite(pipe.unet, 8, 16)
    net = ControlNetLLLite.from_file(pipe.unet, res.weights_path)
    sd = read_sd(res.weights_path)
    assert set(sd) == set(fresh.state_dict()) and all(v.dtype == torch.float16 for v in sd.values())  # the default: kohya's fp16
    assert all(m.up[0].weight.abs().sum() > 0 for m in net.lllite_modules.values())
    k = next(k for k in sd if k.endswith("up.0.weight"))
    assert not torch.equal(read_sd(tmp_path / "t-step00000010.safetensors")[k], sd[k])  # step 10 is not the end
    # the loss went down at fixed noise and timesteps on a training batch (the initial network is the identity)
    ds = load_train_dataset(**DIRS, resolution=64)
    batch = next(iter(make_dataloader(ds, batch_size=8, shuffle=False)))
    before, after = fixed_eval_loss(pipe, fresh, batch), fixed_eval_loss(pipe, net, batch)
    assert after < 0.985 * before, (before, after)  # 1.093 -> 1.054 when written


# ---------------------------------------------------------------- resume

def test_resume_equals_an_uninterrupted_run(tmp_path):
    # batch 4 with 3-batch accumulation: 10 batches, so 4 optimizer steps per epoch (3 + 3 + 3 + 1 batches). Dropout,
    # warm-up, noise offset and Min-SNR are on, so that every piece of state matters. N = 5: the break is inside the
    # second epoch (after 3 of its batches); the resumed run skips them, ends that epoch with a 1-batch step, goes on.
    kw = dict(train_batch_size=4, gradient_accumulation_steps=3, network_dropout=0.1, lr_scheduler="constant_with_warmup",
              lr_warmup_steps=2, noise_offset=0.05, min_snr_gamma=5.0, output_name="r")
    whole = train(tiny_cfg(tmp_path / "whole", max_train_steps=10, save_every_n_steps=5, save_state=True, **kw))
    first = train(tiny_cfg(tmp_path / "split", max_train_steps=5, save_state=True, **kw))
    state = tmp_path / "split" / "r-state"
    assert sorted(p.name for p in state.iterdir()) == ["lllite.safetensors", "lr_scheduler.safetensors", "optimizer.safetensors",
                                                       "rng_state.safetensors", "train_state.json"]  # no pickle
    info = json.loads((state / "train_state.json").read_text())
    assert (info["step"], info["epoch"], info["batch_in_epoch"], info["micro"]) == (5, 1, 3, 13)
    # the step-5 state of the long run is the end state of the short one
    mid = tmp_path / "whole" / "r-step00000005-state"
    assert json.loads((mid / "train_state.json").read_text())["losses"] == first.losses
    a, b = read_sd(mid / "lllite.safetensors"), read_sd(state / "lllite.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    more = train(tiny_cfg(tmp_path / "split", max_train_steps=10, resume=str(state), **kw))
    assert more.steps == 10 and more.losses[:5] == first.losses and more.losses == whole.losses
    a, b = read_sd(whole.weights_path), read_sd(more.weights_path)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    # a resume that cannot continue the same data order is refused
    with pytest.raises(TrainConfigError, match="batch_size 4 -> 8"):
        train(tiny_cfg(tmp_path / "bad", max_train_steps=10, resume=str(state), **{**kw, "train_batch_size": 8}))


# ---------------------------------------------------------------- caching

def test_cached_and_uncached_first_loss_agree(tmp_path):
    plain = train(tiny_cfg(tmp_path / "a", max_train_steps=1))
    cached = train(tiny_cfg(tmp_path / "b", max_train_steps=1, cache_latents=True, cache_text_encoder_outputs=True))
    # the same maths (the VAE's mean, the same noise); encoding in other batch sizes may move the last float bit
    assert cached.losses == pytest.approx(plain.losses, rel=1e-6, abs=0)


def _count_rows(pipe):
    "Wrap the VAE encoder and both text encoders so that they count the rows they see."
    seen = dict(vae=0, te=0)
    enc, te1 = pipe.vae.encode, pipe.text_encoder.forward
    def vae_encode(x, *a, **k): seen["vae"] += x.shape[0]; return enc(x, *a, **k)
    def te_forward(ids, *a, **k): seen["te"] += ids.shape[0]; return te1(ids, *a, **k)
    pipe.vae.encode, pipe.text_encoder.forward = vae_encode, te_forward
    return seen


def _forbid(pipe):
    def boom(*a, **k): raise AssertionError("the VAE / text encoders must not run after caching")
    pipe.vae.encode = boom; pipe.text_encoder.forward = boom; pipe.text_encoder_2.forward = boom


def test_caching_runs_encoders_once(tmp_path):
    pipe = load_pipeline("tiny")
    seen = _count_rows(pipe)
    train(tiny_cfg(tmp_path, train_batch_size=20, max_train_steps=None, max_train_epochs=2, cache_latents=True, cache_text_encoder_outputs=True), pipe=pipe)
    assert seen == dict(vae=40, te=40)  # 40 rows, once each, though 2 epochs ran
    # to disk: a second run reads the files and never touches the encoders
    kw = dict(train_batch_size=20, max_train_steps=None, max_train_epochs=2, cache_latents_to_disk=True, cache_text_encoder_outputs_to_disk=True)
    train(tiny_cfg(tmp_path / "d1", **kw, cache_dir=str(tmp_path / "cache")))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["latents.safetensors", "text.safetensors"]
    pipe = load_pipeline("tiny"); _forbid(pipe)
    res = train(tiny_cfg(tmp_path / "d2", **kw, cache_dir=str(tmp_path / "cache")), pipe=pipe)
    assert res.steps == 4
    # another resolution is another fingerprint: recomputed, so the forbidden encoders are reached
    with pytest.raises(AssertionError, match="must not run"):
        train(tiny_cfg(tmp_path / "d3", **{**kw, "max_train_epochs": 1}, resolution="128", cache_dir=str(tmp_path / "cache")), pipe=pipe)


# ---------------------------------------------------------------- precision, checkpointing, divergence

def test_bf16_keeps_lllite_fp32_and_checkpointing_changes_nothing(tmp_path):
    pipe = load_pipeline("tiny")
    res = train(tiny_cfg(tmp_path / "bf16", max_train_steps=2, mixed_precision="bf16", save_precision="fp16"), pipe=pipe)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32 and all(math.isfinite(x) for x in res.losses)
    assert all(v.dtype == torch.float16 for v in read_sd(res.weights_path).values())
    a = train(tiny_cfg(tmp_path / "a", max_train_steps=2))
    b = train(tiny_cfg(tmp_path / "b", max_train_steps=2, gradient_checkpointing=True))
    assert a.losses == b.losses
    sa, sb = read_sd(a.weights_path), read_sd(b.weights_path)
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)


def test_fp16_on_the_cpu_is_the_fp32_run(tmp_path):
    "No fp16 autocast on the CPU (as in accelerate): the models stay fp32 and the losses are the fp32 run's, with a warning."
    pipe = load_pipeline("tiny")
    with pytest.warns(UserWarning, match="fp16 has no autocast on the CPU"):
        half = train(tiny_cfg(tmp_path / "fp16", max_train_steps=2, mixed_precision="fp16"), pipe=pipe)
    assert (pipe.unet.dtype, pipe.text_encoder.dtype, pipe.text_encoder_2.dtype) == (torch.float32,) * 3
    full = train(tiny_cfg(tmp_path / "no", max_train_steps=2), pipe=load_pipeline("tiny"))  # a fresh model, as the fp16 run had
    assert len(half.losses) == 2 and half.losses == full.losses
    a, b = read_sd(half.weights_path), read_sd(full.weights_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    pipe = load_pipeline("tiny")
    fwd, calls = pipe.unet.forward, [0]
    def nan_after_3(*a, **k):
        calls[0] += 1
        out = fwd(*a, **k)
        return UNet2DConditionOutput(sample=out.sample * float("nan")) if calls[0] > 3 else out
    pipe.unet.forward = nan_after_3
    with pytest.raises(TrainingDivergedError, match=r"step 4 .*at-step00000002\.safetensors"):
        train(tiny_cfg(tmp_path, max_train_steps=10, save_every_n_steps=2), pipe=pipe)
    sd = read_sd(tmp_path / "at-step00000002.safetensors")
    assert all(torch.isfinite(v).all() for v in sd.values())
    assert not (tmp_path / "last.safetensors").exists()


# ---------------------------------------------------------------- flags and bad input

def test_cli_runs(tmp_path):
    main(["--train_data_dir", DIRS["train_data_dir"], "--conditioning_data_dir", DIRS["conditioning_data_dir"],
          "--caption_extension", ".txt", "--resolution", "64", "--cond_emb_dim", "8", "--network_dim", "16",
          "--max_train_steps", "1", "--output_dir", str(tmp_path), "--output_name", "cli", "--xformers"])
    assert (tmp_path / "cli.safetensors").is_file() and (tmp_path / "cli-loss.png").is_file()


def test_flags_parse_to_the_config():
    c = parse_args(["--dataset_config", "d.toml", "--network_dim", "16", "--cache_latents", "--learning_rate", "1e-3",
                    "--max_train_epochs", "3", "--mixed_precision", "bf16", "--v_parameterization", "--noise_offset", "0.05",
                    "--no_progress", "--resolution", "1024,768"])
    assert (c.network_dim, c.cache_latents, c.learning_rate, c.max_train_epochs, c.mixed_precision, c.v_parameterization,
            c.noise_offset, c.cond_emb_dim, c.max_train_steps, c.progress, c.resolution) == \
        (16, True, 1e-3, 3, "bf16", True, 0.05, 32, None, False, "1024,768")
    assert parse_args([]) == TrainConfig()  # every default is the dataclass's


def test_unknown_flag_is_refused_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as e: parse_args(["--dataset_config", "d.toml", "--learnig_rate", "1"])
    assert e.value.code == 2 and "did you mean --learning_rate?" in capsys.readouterr().err


@pytest.mark.parametrize("kw, msg", [
    (dict(), "exactly one data source"),
    (dict(dataset_name="x", train_data_dir="y", conditioning_data_dir="z"), "exactly one data source"),
    (dict(train_data_dir="y"), "go together"),
    (dict(dataset_name="x", max_train_steps=5, max_train_epochs=2), "not both"),
    (dict(dataset_name="x", lr_warmup_steps=10), "constant_with_warmup"),
    (dict(dataset_name="x", sample_every_n_steps=10), "needs --sample_prompts"),
    (dict(dataset_name="x", cache_latents=True, flip_aug=True), "--flip_aug"),
    (dict(dataset_name="x", mixed_precision="fp8"), "--mixed_precision 'fp8'"),
    (dict(dataset_name="x", network_dim=0), "--network_dim must be > 0"),
    (dict(dataset_name="x", network_dropout=1.0), "--network_dropout"),
    (dict(dataset_name="x", optimizer_type="Lion"), "--optimizer_type"),
])
def test_contradictions_are_refused(kw, msg):
    with pytest.raises(TrainConfigError, match=msg.replace("(", r"\(")): check_config(TrainConfig(**kw))


def test_cli_reports_contradictions(capsys):
    with pytest.raises(SystemExit): main(["--dataset_name", "x", "--max_train_steps", "3", "--max_train_epochs", "1"])
    assert "not both" in capsys.readouterr().err


def test_bad_data_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.toml"): check_config(TrainConfig(dataset_config=str(tmp_path / "dataset.toml")))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(tiny_cfg(tmp_path, train_data_dir=str(tmp_path / "nowhere")))
    (tmp_path / "img").mkdir(); (tmp_path / "cond").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "img" / "a.png"); Image.new("RGB", (64, 64)).save(tmp_path / "img" / "b.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "cond" / "a.png")
    with pytest.raises(ValueError, match=r"1 image\(s\) in .*img have no conditioning image with the same basename in .*cond: b\.png$"):
        train(tiny_cfg(tmp_path, train_data_dir=str(tmp_path / "img"), conditioning_data_dir=str(tmp_path / "cond")))
    with pytest.raises(TrainConfigError, match="batch_size = 4"):
        train(tiny_cfg(tmp_path, **{k: None for k in ("train_data_dir", "conditioning_data_dir")}, dataset_config=str(DATA / "dataset.toml"),
                       train_batch_size=2))
