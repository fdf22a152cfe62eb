"API tests of lllite_nb.data: normalisation, preprocessors, shapes world, sources, buckets, batches, bad input."
import json, warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lllite_nb.data import (DatasetError, bucket_geometry, kohya_dataset, load_hf_dataset, make_bucket_resolutions,
                            parse_resolution, read_dataset_config, resize_and_crop, select_bucket)
from lllite_nb.dataset import BucketBatchSampler, LLLiteDataset, collate_samples, load_train_dataset, make_dataloader
from lllite_nb.shapes import (draw_shapes_sample, make_data_samples, make_shapes_dataset, make_synthetic_dataset, render_shapes,
                              shapes_caption)
from lllite_nb.images import PREPROCESSORS, canny, image_to_tensor, tensor_to_image, to_rgb

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"


def _pic(k, size=(128, 128)):
    "A shapes picture resized to `size`."
    return draw_shapes_sample(np.random.default_rng([99, k]), 128)[0].resize(size, Image.LANCZOS)


def _folder(tmp_path, sizes, cond=lambda img: img, ext=".png", cond_ext=".png", captions=True):
    "A kohya CLI layout: img/k.png (+ k.caption), cond/k.png = cond(picture)."
    (tmp_path / "img").mkdir(parents=True, exist_ok=True); (tmp_path / "cond").mkdir(exist_ok=True)
    for k, size in enumerate(sizes):
        img = _pic(k, size)
        img.save(tmp_path / "img" / f"{k:03d}{ext}")
        cond(img).save(tmp_path / "cond" / f"{k:03d}{cond_ext}")
        if captions: (tmp_path / "img" / f"{k:03d}.caption").write_text(f"caption {k}\n")
    return tmp_path / "img", tmp_path / "cond"


def _cli(img, cond, **kw):
    return load_train_dataset(train_data_dir=img, conditioning_data_dir=cond, **kw)


# ---------------------------------------------------------------- normalisation
def test_image_to_tensor_is_kohyas_arithmetic():
    u8 = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    ref = (torch.from_numpy(u8).permute(2, 0, 1).contiguous().float().div(255) - 0.5) / 0.5
    for src in (Image.fromarray(u8), u8, torch.from_numpy(u8).permute(2, 0, 1), u8.astype(np.float32) / 255):
        x = image_to_tensor(src)
        assert x.dtype == torch.float32 and x.shape == (3, 20, 30)
        torch.testing.assert_close(x, ref, rtol=0, atol=1e-6)
    assert torch.equal(image_to_tensor(u8), ref)
    assert float(image_to_tensor(np.zeros((2, 2, 3), np.uint8)).min()) == -1.0
    assert float(image_to_tensor(np.full((2, 2, 3), 255, np.uint8)).max()) == 1.0
    assert np.array_equal(np.asarray(tensor_to_image(ref)), u8)
    assert np.array_equal(np.asarray(tensor_to_image(ref[None])), u8)


def test_image_to_tensor_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"): image_to_tensor(np.full((4, 4, 3), 1.5, np.float32))
    with pytest.raises(ValueError, match="channels"): image_to_tensor(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8 or float"): image_to_tensor(torch.zeros(3, 4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="shape"): tensor_to_image(torch.zeros(2, 3, 4, 4))


def test_to_rgb_modes():
    rgba = Image.new("RGBA", (3, 1), (255, 0, 0, 0)); rgba.putpixel((1, 0), (0, 0, 255, 255)); rgba.putpixel((2, 0), (0, 0, 0, 128))
    assert [to_rgb(rgba).getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (0, 0, 255), (0, 0, 0)]  # the alpha rule: on black
    la = Image.new("LA", (1, 1), (255, 128))
    assert to_rgb(la).getpixel((0, 0)) == (128, 128, 128)
    pal = Image.new("P", (2, 1)); pal.putpalette([10, 20, 30, 200, 100, 50]); pal.putpixel((1, 0), 1); pal.info["transparency"] = 0
    assert [to_rgb(pal).getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (200, 100, 50)]
    pal2 = Image.new("P", (1, 1)); pal2.putpalette([10, 20, 30]); assert to_rgb(pal2).getpixel((0, 0)) == (10, 20, 30)
    g16 = Image.fromarray(np.array([[0, 256, 65535, 40000]], np.uint16))
    assert g16.mode.startswith("I;16") and [to_rgb(g16).getpixel((x, 0))[0] for x in range(4)] == [0, 1, 255, 156]
    assert to_rgb(Image.new("L", (1, 1), 77)).getpixel((0, 0)) == (77, 77, 77)
    assert to_rgb(Image.new("1", (1, 1), 1)).getpixel((0, 0)) == (255, 255, 255)


def test_modes_from_files_in_a_dataset(tmp_path):
    img, cond = _folder(tmp_path, [(64, 64)] * 3)
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(img / "000.png")               # transparent -> black
    Image.fromarray(np.full((64, 64), 65535, np.uint16)).save(img / "001.png")       # 16-bit grey -> white
    Image.new("L", (64, 64), 0).save(cond / "002.png")                               # grey guide -> black RGB
    ds = _cli(img, cond, resolution=64)
    assert torch.equal(ds[0]["image"], -torch.ones(3, 64, 64))
    assert torch.equal(ds[1]["image"], torch.ones(3, 64, 64))
    assert torch.equal(ds[2]["conditioning_image"], -torch.ones(3, 64, 64))


# ---------------------------------------------------------------- preprocessors
def test_preprocessors_are_pure_rgb_functions():
    pic = Image.new("RGB", (64, 48), (128, 128, 128)); ImageDraw.Draw(pic).rectangle([16, 12, 39, 35], fill=(240, 210, 40))
    assert set(PREPROCESSORS) >= {"canny", "softedge", "lineart", "scribble", "tile"}
    for name, f in PREPROCESSORS.items():
        a, b = f(pic), f(pic.copy())
        assert a.mode == "RGB" and a.size == (64, 48), name
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
        assert np.asarray(a).std() > 0, name  # something was found
        assert np.asarray(f(Image.new("RGB", (64, 48), (90, 90, 90)))).std() == 0, name  # flat in, flat out
    e = np.asarray(canny(pic))[..., 0] > 0
    assert e[24].nonzero()[0].tolist() == [15, 39]
    assert np.asarray(PREPROCESSORS["scribble"](pic))[..., 0].astype(bool).sum() > e.sum()


# ---------------------------------------------------------------- shapes world and data_samples
def test_shapes_generator_is_deterministic_and_described():
    seen = set()
    for k in range(30):
        img, cap, meta = draw_shapes_sample(np.random.default_rng([5, k]), 96)
        img2, cap2, meta2 = draw_shapes_sample(np.random.default_rng([5, k]), 96)
        assert np.array_equal(np.asarray(img), np.asarray(img2)) and (cap, meta) == (cap2, meta2)
        assert img.size == (96, 96) and img.mode == "RGB"
        assert 1 <= len(meta["shapes"]) <= 2 and all(o["colour"] in cap and o["shape"] in cap for o in meta["shapes"])
        assert np.array_equal(np.asarray(render_shapes(json.loads(json.dumps(meta)))), np.asarray(img))
        seen |= {o["shape"] for o in meta["shapes"]}; seen.add(meta["split"])
    assert seen >= {"circle", "square", "triangle", "star", None, "vertical", "horizontal"}
    assert [draw_shapes_sample(np.random.default_rng([5, k]), 96)[1] for k in range(3)] == [
        "a black triangle on a pink and red background", "a black triangle and a black circle on a green and white background",
        "an orange triangle on a white background"]  # the captions of the metadata, as words
    assert shapes_caption(dict(background=["orange"], shapes=[dict(colour="red", shape="star")] * 2)) == "two red stars on an orange background"


def test_data_samples_regenerate_byte_identical(tmp_path):
    fresh = make_data_samples(tmp_path / "data_samples")
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    assert files(fresh) == files(SAMPLES)
    for f in files(SAMPLES): assert (fresh / f).read_bytes() == (SAMPLES / f).read_bytes(), f"{f} differs: run `make data-samples`"
    assert len(files(SAMPLES)) == 3 * 46 + 3 and sum((SAMPLES / f).stat().st_size for f in files(SAMPLES)) < 5_000_000
    rows = [json.loads(l) for l in (SAMPLES / "train" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and set(rows[0]) == {"file_name", "conditioning_image_file_name", "text"}
    assert all((SAMPLES / "train" / r["file_name"]).with_suffix(".txt").read_text().strip() == r["text"] for r in rows)
    for r in rows[:5]:  # guides are the Canny edges of their pictures
        pic = Image.open(SAMPLES / "train" / r["file_name"])
        assert np.array_equal(np.asarray(canny(pic)), np.asarray(Image.open(SAMPLES / "train" / r["conditioning_image_file_name"])))
    assert len(list((SAMPLES / "holdout" / "images").glob("*.png"))) == 6
    with pytest.raises(FileExistsError, match="not a sample-data folder"):
        (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "keep.txt").write_text("x"); make_data_samples(tmp_path / "mine")


def test_make_shapes_dataset_prefix_stable_and_refuses_overwrite(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", 3, seed=4, size=64)
    b = make_shapes_dataset(tmp_path / "b", 5, seed=4, size=64, preprocessor="tile")
    for k in range(3): assert (a / "images" / f"{k:04d}.png").read_bytes() == (b / "images" / f"{k:04d}.png").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"): make_shapes_dataset(tmp_path / "a", 2, seed=1, size=64)
    make_shapes_dataset(tmp_path / "a", 2, seed=1, size=64, overwrite=True)
    assert len(list((a / "images").glob("*.png"))) == 2
    assert len(load_train_dataset(a / "dataset.toml", resolution=64)) == 2


def test_make_synthetic_dataset_with_a_stand_in_pipeline(tmp_path):
    calls = []
    class Out:  # what a diffusers pipeline returns
        def __init__(self, img): self.images = [img]
    def pipe(prompt, generator, height, width):
        calls.append(prompt)
        g = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
        return Out(Image.fromarray(g.integers(0, 256, (height, width, 3), dtype=np.uint8)))
    out = make_synthetic_dataset(pipe, ["a cat", "a dog", "a bird"], tmp_path / "s", preprocessor="softedge", seed=3, height=64, width=96)
    assert calls == ["a cat", "a dog", "a bird"]
    assert (out / "images" / "0002.txt").read_text() == "a bird\n"
    assert Image.open(out / "conditioning" / "0001.png").size == (96, 64)
    ds = load_train_dataset(out / "dataset.toml")
    assert len(ds) == 3 and ds[1]["image"].shape == (3, 64, 96) and ds[1]["caption"] == "a dog"
    again = make_synthetic_dataset(pipe, ["a cat"], tmp_path / "t", preprocessor="softedge", seed=3, height=64, width=96)
    assert (again / "images" / "0000.png").read_bytes() == (out / "images" / "0000.png").read_bytes()  # seeded
    with pytest.raises(ValueError, match="at least one prompt"): make_synthetic_dataset(pipe, [], tmp_path / "u")


# ---------------------------------------------------------------- sources
def test_toml_cli_imagefolder_and_dataset_object_agree():
    t = load_train_dataset(SAMPLES / "dataset.toml")
    c = load_train_dataset(train_data_dir=SAMPLES / "train" / "images", conditioning_data_dir=SAMPLES / "train" / "conditioning",
                           caption_extension=".txt")
    h = load_train_dataset(dataset_name=SAMPLES / "train")
    o = load_train_dataset(dataset_name=h.hf)  # any datasets.Dataset
    assert len(t) == len(c) == len(h) == len(o) == 40 and t.batch_size == 4 and c.batch_size is None
    assert list(t.buckets) == list(h.buckets) == [(128, 128)]
    for i in range(40):
        ss = [d[i] for d in (t, c, h, o)]
        for k in ("image", "conditioning_image"): assert all(torch.equal(ss[0][k], s[k]) for s in ss[1:]), (i, k)
        for k in ("caption", "original_size", "crop_top_left", "target_size", "index"): assert all(ss[0][k] == s[k] for s in ss[1:]), (i, k)
    s = t[0]
    assert set(s) == {"image", "conditioning_image", "caption", "original_size", "crop_top_left", "target_size", "index"}
    assert s["image"].dtype == torch.float32 and -1 <= float(s["image"].min()) and float(s["image"].max()) <= 1
    assert s["caption"] == (SAMPLES / "train" / "images" / "0000.txt").read_text().strip()


def test_hf_column_names_are_configurable(tmp_path):
    import datasets
    pics = [_pic(k, (64, 64)) for k in range(3)]
    hf = datasets.Dataset.from_dict(dict(target=pics, source=[canny(p) for p in pics], prompt=["a", "b", "c"]))
    ds = load_train_dataset(dataset_name=hf, image_column="target", conditioning_image_column="source", caption_column="prompt", resolution=64)
    assert [ds[i]["caption"] for i in range(3)] == ["a", "b", "c"]
    assert torch.equal(ds[2]["conditioning_image"], image_to_tensor(canny(pics[2])))
    dd = datasets.DatasetDict(train=hf)
    assert len(load_hf_dataset(dd, "target", "source", "prompt")) == 3
    hf.save_to_disk(str(tmp_path / "saved"))
    assert load_hf_dataset(tmp_path / "saved", "target", "source", "prompt").column_names == ["image", "conditioning_image", "text"]


def test_toml_options_override_arguments_and_resolve_against_the_toml(tmp_path, monkeypatch):
    img, cond = _folder(tmp_path, [(96, 64)] * 2)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "d.toml").write_text(
        '[general]\ncaption_extension = ".caption"\n[[datasets]]\nresolution = [96, 64]\nbatch_size = 2\n'
        '[[datasets.subsets]]\nimage_dir = "../img"\nconditioning_data_dir = "../cond"\nnum_repeats = 3\n')
    monkeypatch.chdir(tmp_path / "img")  # relative paths do not depend on the working directory
    ds = load_train_dataset(tmp_path / "cfg" / "d.toml", resolution=512, caption_extension=".nope")
    assert len(ds) == 6 and ds.batch_size == 2 and ds[0]["image"].shape == (3, 64, 96) and ds[0]["caption"] == "caption 0"
    assert [ds[i]["index"] for i in range(6)] == [0, 0, 0, 1, 1, 1]  # repeats share the row id
    cfg = read_dataset_config(tmp_path / "cfg" / "d.toml")
    assert cfg.subsets[0].image_dir.resolve() == img.resolve() and cfg.subsets[0].num_repeats == 3
    (tmp_path / "cfg" / "e.toml").write_text('[[datasets]]\n[[datasets.subsets]]\nimage_dir = "../img"\nconditioning_data_dir = "../cond"\n')
    ds = load_train_dataset(tmp_path / "cfg" / "e.toml", resolution="96,64", enable_bucket=False)  # arguments fill the gaps
    assert ds[0]["image"].shape == (3, 64, 96) and ds.batch_size is None and ds[0]["caption"] == "caption 0"


def test_parse_resolution():
    assert [parse_resolution(r) for r in (64, "64", "96,64", (96, 64), [96, 64])] == [(64, 64)] * 2 + [(96, 64)] * 3
    for bad in ("x", (1, 2, 3), 0, "-5"):
        with pytest.raises(ValueError): parse_resolution(bad)


# ---------------------------------------------------------------- buckets and alignment
def test_bucket_list_reference_numbers():
    assert make_bucket_resolutions((128, 128), 64, 256, 32) == [
        (64, 192), (64, 224), (64, 256), (96, 160), (128, 128), (160, 96), (192, 64), (224, 64), (256, 64)]
    sdxl = make_bucket_resolutions((1024, 1024), 256, 2048, 64)
    assert len(sdxl) == 41 and sdxl[0] == (256, 2048) and sdxl[-1] == (2048, 512)
    assert {(1024, 1024), (1088, 960), (960, 1088), (1216, 832), (1344, 768), (1536, 640), (640, 1536)} <= set(sdxl)
    b = make_bucket_resolutions((128, 128), 64, 256, 32)
    assert [select_bucket(s, b) for s in [(128, 128), (200, 100), (300, 90), (120, 160), (96, 160)]] == [
        (128, 128), (160, 96), (224, 64), (96, 160), (96, 160)]
    assert bucket_geometry((200, 100), (160, 96)) == ((192, 96), (0, 16))
    assert bucket_geometry((100, 300), (64, 192)) == ((64, 192), (0, 0))
    assert bucket_geometry((90, 120), (96, 160)) == ((120, 160), (0, 12))


def test_alignment_identical_guide_is_equal_after_every_transform(tmp_path):
    sizes = [(128, 128), (200, 100), (100, 200), (300, 90), (120, 160), (77, 131), (201, 100)]
    img, cond = _folder(tmp_path, sizes, cond_ext=".bmp")
    ds = _cli(img, cond, enable_bucket=True, min_bucket_reso=64, max_bucket_reso=256, bucket_reso_steps=32)
    for i in range(len(ds)):
        for flip in (False, True):
            s = ds[(i, flip)]
            assert s["image"].shape == s["conditioning_image"].shape == (3, *s["target_size"])
            assert all(v % 32 == 0 for v in s["target_size"])
            assert torch.equal(s["image"], s["conditioning_image"]), (i, flip)
            assert s["original_size"] == (sizes[i][1], sizes[i][0])
    a, b = ds[(1, False)], ds[(1, True)]
    assert torch.equal(b["image"], a["image"].flip(-1)) and a["crop_top_left"] == (0, 16) and b["crop_top_left"] == (0, 16)
    assert ds[(5, True)]["crop_top_left"] == (1, 0)  # 77x131 -> 96x163 -> crop 96x160 from row 1
    assert ds[6]["crop_top_left"] == (0, 16) and ds[(6, True)]["crop_top_left"] == (0, 17)  # 193 wide: 16 + 160 + 17


def test_alignment_guide_of_other_size_follows_the_picture(tmp_path):
    # guide = the picture at half size: after the transform it must match the transformed picture (resize tolerance);
    # kohya's stretch of the guide to the bucket would be far off for this wide picture
    img, cond = _folder(tmp_path, [(240, 100)], cond=lambda p: p.resize((120, 50), Image.LANCZOS))
    ds = _cli(img, cond, enable_bucket=True, min_bucket_reso=64, max_bucket_reso=256, bucket_reso_steps=32)
    s = ds[0]
    assert s["target_size"] == (64, 192) and s["crop_top_left"] == (8, 0)  # 240x100 -> 192x80 -> rows 8..71
    err = (s["image"] - s["conditioning_image"]).abs().mean()
    stretched = image_to_tensor(Image.open(cond / "000.png").resize((192, 64), Image.LANCZOS))
    assert err < 0.05 < (s["image"] - stretched).abs().mean()


def test_canny_guide_matches_canny_of_the_transformed_picture(tmp_path):
    # no resize (picture already bucket-sized, cropped only): the guide tensor is exactly canny of the sample's picture
    img, cond = _folder(tmp_path, [(160, 96)], cond=canny)
    s = _cli(img, cond, resolution=(160, 96))[0]
    assert torch.equal(s["conditioning_image"], image_to_tensor(canny(tensor_to_image(s["image"]))))


def test_no_bucket_mode_crops_to_the_resolution(tmp_path):
    img, cond = _folder(tmp_path, [(200, 100), (64, 64)])
    ds = _cli(img, cond, resolution=64)
    assert list(ds.buckets) == [(64, 64)] and ds[0]["crop_top_left"] == (0, 32) and ds[0]["image"].shape == (3, 64, 64)
    assert torch.equal(ds[0]["image"], image_to_tensor(resize_and_crop(_pic(0, (200, 100)), (128, 64), (0, 32), (64, 64))))
    with pytest.raises(ValueError, match="multiples of 32"): _cli(img, cond, resolution=100)
    with pytest.raises(ValueError, match="bucket_reso_steps"): _cli(img, cond, enable_bucket=True, bucket_reso_steps=48)
    with pytest.raises(ValueError, match="min_bucket_reso"): _cli(img, cond, resolution=128, enable_bucket=True, min_bucket_reso=256)


# ---------------------------------------------------------------- batches
def test_batches_never_mix_buckets_and_are_deterministic(tmp_path):
    sizes = [(128, 128)] * 5 + [(200, 100)] * 4 + [(100, 200)] * 3 + [(300, 90)] * 2
    img, cond = _folder(tmp_path, sizes)
    ds = _cli(img, cond, enable_bucket=True, min_bucket_reso=64, max_bucket_reso=256, bucket_reso_steps=32, flip_aug=True)
    assert {k: len(v) for k, v in ds.buckets.items()} == {(96, 160): 3, (128, 128): 5, (160, 96): 4, (224, 64): 2}
    dl = make_dataloader(ds, batch_size=2, seed=3)
    assert len(dl) == 1 + 2 + 3 + 2
    epochs = []
    for e in range(3):
        dl.set_epoch(e); seen, order = [], []
        for b in dl:
            B = len(b["caption"])
            assert b["image"].shape == b["conditioning_image"].shape and b["image"].shape[0] == B <= 2
            assert b["original_size"].shape == b["crop_top_left"].shape == b["target_size"].shape == (B, 2)
            assert b["target_size"].dtype == torch.long and b["index"].shape == (B,)
            assert len({tuple(t) for t in b["target_size"].tolist()}) == 1
            assert tuple(b["image"].shape[2:]) == tuple(b["target_size"][0].tolist())
            assert torch.equal(b["image"], b["conditioning_image"])  # guide = picture, flipped together
            seen += b["index"].tolist(); order.append(b["index"].tolist())
        assert sorted(seen) == list(range(len(sizes)))
        epochs.append(order)
    assert epochs[0] != epochs[1]
    again = make_dataloader(ds, batch_size=2, seed=3); again.set_epoch(1)
    assert [b["index"].tolist() for b in again] == epochs[1]
    flips = [f for batch in BucketBatchSampler(ds, 2, seed=3) for _, f in batch]
    assert 0 < sum(flips) < len(flips)  # flip_aug flips some samples
    assert not any(f for batch in BucketBatchSampler(_cli(img, cond, resolution=64), 2) for _, f in batch)
    unshuffled = [[i for i, _ in b] for b in BucketBatchSampler(ds, 4, shuffle=False)]
    assert unshuffled == [[9, 10, 11], [0, 1, 2, 3], [4], [5, 6, 7, 8], [12, 13]]  # buckets in (w, h) order
    with pytest.raises(ValueError, match="mixes sizes"): collate_samples([ds[0], ds[5]])


def test_dataloader_with_workers_and_config_batch_size():
    ds = load_train_dataset(SAMPLES / "dataset.toml")
    dl = make_dataloader(ds, None, shuffle=False, num_workers=2)
    b = next(iter(dl))
    assert b["image"].shape == (4, 3, 128, 128) and b["index"].tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------- bad input
def test_image_without_conditioning_lists_files_and_count(tmp_path):
    img, cond = _folder(tmp_path, [(32, 32)] * 8)
    for k in range(7): (cond / f"{k:03d}.png").unlink()
    with pytest.raises(DatasetError, match=r"7 image\(s\) in .* have no conditioning image.*000.png, 001.png.*\(7 in all\)"):
        _cli(img, cond, resolution=32)


def test_conditioning_without_image(tmp_path):
    img, cond = _folder(tmp_path, [(32, 32)] * 2)
    Image.new("RGB", (32, 32)).save(cond / "zzz.jpg")
    with pytest.raises(DatasetError, match=r"1 conditioning image\(s\) .* have no image .*zzz.jpg"): _cli(img, cond, resolution=32)


def test_unreadable_and_truncated_images_are_named(tmp_path):
    img, cond = _folder(tmp_path, [(64, 64)] * 2)
    (cond / "001.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"cannot read image .*001.png"): _cli(img, cond, resolution=64)
    img, cond = _folder(tmp_path / "t", [(64, 64)] * 2)
    data = (img / "001.png").read_bytes(); (img / "001.png").write_bytes(data[: len(data) // 2])
    # the header is fine, the pixels are not: found when the dataset is built (every file is decoded once), not mid-run
    with pytest.raises(DatasetError, match=r"cannot read image .*img/001.png: .*[Tt]runcated"): _cli(img, cond, resolution=64)


def test_missing_and_empty_captions_warn_and_give_empty_caption(tmp_path):
    img, cond = _folder(tmp_path, [(32, 32)] * 3)
    (img / "000.caption").unlink(); (img / "001.caption").write_text("")
    with pytest.warns(UserWarning, match=r"2 image\(s\) .* missing or empty caption file.*000.png, 001.png"):
        ds = _cli(img, cond, resolution=32)
    assert [ds[i]["caption"] for i in range(3)] == ["", "", "caption 2"]
    (img / "000.caption").write_text("first line\nsecond line\n"); (img / "001.caption").write_text("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning once every caption is there
        ds = _cli(img, cond, resolution=32)
    assert ds[0]["caption"] == "first line"  # kohya reads the first line


def test_conditioning_of_other_aspect_ratio_warns_then_resizes(tmp_path):
    img, cond = _folder(tmp_path, [(64, 64)] * 2)
    Image.new("RGB", (64, 32), (255, 255, 255)).save(cond / "001.png")
    with pytest.warns(UserWarning, match=r"1 conditioning image\(s\) have another aspect ratio.*001.png \(64x32, picture 64x64\)"):
        ds = _cli(img, cond, resolution=64)
    assert torch.equal(ds[1]["conditioning_image"], torch.ones(3, 64, 64))


def test_random_crop_and_unknown_keys_are_refused(tmp_path):
    img, cond = _folder(tmp_path, [(32, 32)])
    sub = f'[[datasets.subsets]]\nimage_dir = "{img}"\nconditioning_data_dir = "{cond}"\n'
    (tmp_path / "rc.toml").write_text("[general]\nrandom_crop = true\n[[datasets]]\n" + sub)
    with pytest.raises(ValueError, match="random_crop = true is not supported"): load_train_dataset(tmp_path / "rc.toml")
    (tmp_path / "typo.toml").write_text("[[datasets]]\nresolutoin = 64\n" + sub)
    with pytest.raises(ValueError, match=r"unknown key 'resolutoin' \(did you mean 'resolution'\?\)"): load_train_dataset(tmp_path / "typo.toml")
    (tmp_path / "sub.toml").write_text("[[datasets]]\n" + sub + "batchsize = 3\n")
    with pytest.raises(ValueError, match=r"subsets\]\] #1: unknown key 'batchsize'"): load_train_dataset(tmp_path / "sub.toml")
    (tmp_path / "ign.toml").write_text("[[datasets]]\nresolution = 32\n" + sub + "shuffle_caption = true\n")
    with pytest.warns(UserWarning, match="'shuffle_caption' is not implemented"): load_train_dataset(tmp_path / "ign.toml")
    (tmp_path / "two.toml").write_text("[[datasets]]\n" + sub + "[[datasets]]\n" + sub)
    with pytest.raises(ValueError, match="exactly one"): load_train_dataset(tmp_path / "two.toml")
    (tmp_path / "bad.toml").write_text("[[datasets]\n")
    with pytest.raises(ValueError, match="not valid TOML"): load_train_dataset(tmp_path / "bad.toml")


def test_empty_folders(tmp_path):
    (tmp_path / "img").mkdir(); (tmp_path / "cond").mkdir(); (tmp_path / "img" / "notes.md").write_text("x")
    with pytest.raises(DatasetError, match=r"image_dir .*img holds no images"): _cli(tmp_path / "img", tmp_path / "cond")
    with pytest.raises(FileNotFoundError, match="conditioning_data_dir .*nope is not a folder"): _cli(tmp_path / "img", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"): load_train_dataset(dataset_name=tmp_path / "empty")


def test_missing_column_names_existing_ones():
    import datasets
    hf = datasets.Dataset.from_dict(dict(image=[_pic(0, (32, 32))], caption=["x"]))
    with pytest.raises(DatasetError, match=r"no column 'conditioning_image' \(conditioning_image_column\), 'text' \(caption_column\); its columns are \['image', 'caption'\]"):
        load_train_dataset(dataset_name=hf)


def test_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one.*none"): load_train_dataset()
    with pytest.raises(ValueError, match="exactly one"): load_train_dataset(SAMPLES / "dataset.toml", dataset_name=SAMPLES / "train")
    with pytest.raises(ValueError, match="go together"): load_train_dataset(train_data_dir=SAMPLES / "train" / "images")
