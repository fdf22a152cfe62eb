"The tiny SDXL keeps SDXL's layout; model sources resolve or fail clearly."
import torch
import pytest

from lllite_nb.models import (attention_layout, build_meta_unet, load_pipeline, sdxl_unet_config, tiny_unet,
                              ModelSourceError, clip_tokenizer)


def test_layout_matches_sdxl():
    xl, tiny = build_meta_unet(sdxl_unet_config()), tiny_unet()
    assert attention_layout(tiny) == attention_layout(xl)
    assert [type(b).__name__ for b in tiny.down_blocks] == [type(b).__name__ for b in xl.down_blocks] == \
        ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert type(tiny.mid_block).__name__ == type(xl.mid_block).__name__ == "UNetMidBlock2DCrossAttn"
    assert [len(b.resnets) for b in tiny.down_blocks] == [len(b.resnets) for b in xl.down_blocks] == [2, 2, 2]
    # per-attention transformer counts: SDXL (2, 10, mid 10), tiny (2, 2, mid 2)
    assert [len(a.transformer_blocks) for b in xl.down_blocks[1:] for a in b.attentions] == [2, 2, 10, 10]
    assert len(xl.mid_block.attentions[0].transformer_blocks) == 10
    assert tiny.config.addition_embed_type == xl.config.addition_embed_type == "text_time"


def test_meta_unet_has_no_storage():
    xl = build_meta_unet(sdxl_unet_config())
    assert all(p.device.type == "meta" for p in xl.parameters())
    assert xl.down_blocks[2].attentions[0].transformer_blocks[9].attn1.to_q.weight.shape == (1280, 1280)
    assert xl.down_blocks[1].attentions[1].transformer_blocks[1].attn2.to_k.weight.shape == (640, 2048)


def test_tiny_pipeline_generates_offline_and_seeded():
    pipe = load_pipeline("tiny")
    run = lambda: pipe("a blue square", num_inference_steps=2, height=64, width=64,
                       generator=torch.Generator().manual_seed(1), output_type="np").images
    a, b = run(), run()
    assert a.shape == (1, 64, 64, 3) and (a == b).all()
    assert a.std() > 0  # not a constant image


def test_tokenizers_like_sdxl():
    t1, t2 = clip_tokenizer(), clip_tokenizer(pad_token="!")
    assert t1.model_max_length == t2.model_max_length == 77
    ids = t1("a photo", padding="max_length").input_ids
    assert len(ids) == 77 and ids[:1] == [998] and ids[-1] == 999
    assert t2("a photo", padding="max_length").input_ids[-1] == 0  # "!" pads the second tokenizer


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_pipeline(tmp_path / "missing.safetensors")
    with pytest.raises(ModelSourceError, match="model_index.json"):
        load_pipeline(tmp_path)
    with pytest.raises(ModelSourceError, match="hub id"):
        load_pipeline("no-such-org/no-such-model")
