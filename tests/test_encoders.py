"Tests of meru_nb.encoders: sizes on the meta device, state-dict names, position embedding, tokenizer, pooling, bad input, open_clip towers."
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch a hub

import pytest
import torch
from torch.testing import assert_close

from meru_nb.encoders import (EOT_ID, SOT_ID, TOWER_SIZES, VOCAB_SIZE, REFERENCE_TEXT_KEYS, check_images, check_tokens,
                              count_parameters, image_tower, open_clip_towers, sincos_pos_embed, text_keys_from_reference,
                              text_tower, tokenize, tower_config)

logging.getLogger().setLevel(logging.ERROR)


# ---- parameter counts (meta device: nothing allocated)

@pytest.mark.parametrize("size,total", [("S", 85.29), ("B", 149.62), ("L", 367.25)])
def test_meru_parameter_counts_match_paper(size, total):
    counts = count_parameters(size, "meru")
    assert round(counts["total"] / 1e6, 2) == total
    assert round(counts["text"] / 1e6, 2) == 63.17
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert count_parameters(size, "clip")["total"] == counts["total"] - 3


def test_counts_do_not_allocate():
    with torch.device("meta"):
        vit = image_tower("L")
    assert all(p.is_meta for p in vit.parameters())
    assert count_parameters("L")["image"] == sum(p.numel() for p in vit.parameters())


def test_fixed_pos_embed_is_counted_as_in_the_paper():
    "Dropping the fixed pos_embed from the count would miss the paper's 85.29M."
    counts = count_parameters("S")
    assert round((counts["total"] - 197 * 384) / 1e6, 2) != 85.29


def test_count_rejects_unknown_kind_and_size():
    with pytest.raises(ValueError, match="kind"):
        count_parameters("S", "siglip")
    with pytest.raises(ValueError, match="unknown tower size"):
        count_parameters("XL")


# ---- state-dict names

def test_vit_s_keys_and_shapes():
    with torch.device("meta"):
        vit = image_tower("S")
    sd = vit.state_dict()
    assert sd["cls_token"].shape == (1, 1, 384) and sd["pos_embed"].shape == (1, 197, 384)
    assert sd["patch_embed.proj.weight"].shape == (384, 3, 16, 16) and sd["patch_embed.proj.bias"].shape == (384,)
    expected = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    for n in range(12):
        for part, shapes in {"norm1": [(384,)] * 2, "attn.qkv": [(1152, 384), (1152,)], "attn.proj": [(384, 384), (384,)],
                             "norm2": [(384,)] * 2, "mlp.fc1": [(1536, 384), (1536,)], "mlp.fc2": [(384, 1536), (384,)]}.items():
            for suffix, shape in zip(["weight", "bias"], shapes):
                key = f"blocks.{n}.{part}.{suffix}"
                expected.add(key)
                assert sd[key].shape == shape, key
    assert set(sd) == expected
    assert vit.blocks[0].attn.num_heads == 12 and vit.norm.eps == 1e-5 and vit.width == 384


@pytest.mark.parametrize("size,width,depth,heads", [("B", 768, 12, 12), ("L", 1024, 24, 16)])
def test_vit_b_l_sizes(size, width, depth, heads):
    with torch.device("meta"):
        vit = image_tower(size)
    assert vit.width == width and len(vit.blocks) == depth and vit.blocks[0].attn.num_heads == heads
    assert vit.pos_embed.shape == (1, 197, width)


def test_text_tower_paper_config_and_reference_names():
    with torch.device("meta"):
        txt = text_tower("B")
    sd = txt.state_dict()
    assert sd["token_embedding.weight"].shape == (VOCAB_SIZE, 512) and sd["positional_embedding"].shape == (77, 512)
    assert len(txt.transformer.resblocks) == 12 and txt.transformer.resblocks[0].attn.num_heads == 8
    assert txt.text_projection is None and txt.pool_type == "argmax" and txt.width == 512
    assert not any(k.startswith("attn_mask") for k in sd)  # non-persistent buffer
    renamed = text_keys_from_reference({"token_embed.weight": 0, "posit_embed": 1, "resblocks.3.attn.in_proj_weight": 2,
                                        "resblocks.0.mlp.c_fc.bias": 3, "ln_final.weight": 4, "attn_mask": 5})
    assert renamed == {"token_embedding.weight": 0, "positional_embedding": 1, "transformer.resblocks.3.attn.in_proj_weight": 2,
                       "transformer.resblocks.0.mlp.c_fc.bias": 3, "ln_final.weight": 4}
    assert set(renamed) <= set(sd)
    with pytest.raises(KeyError, match="unexpected key"):
        text_keys_from_reference({"text_projection": 0})
    assert set(REFERENCE_TEXT_KEYS) == {"token_embed.", "posit_embed", "resblocks.", "ln_final."}


# ---- sin-cos position embedding

def test_pos_embed_properties():
    pe = sincos_pos_embed(14, 384)
    assert pe.shape == (197, 384) and pe.dtype == torch.float32
    assert (pe[0] == 0).all() and pe.abs().max() <= 1
    assert_close(pe[1:].square().sum(1), torch.full((196,), 192.0))
    assert torch.unique(pe[1:], dim=0).shape[0] == 196
    # patch 1 is (row 0, col 1): the row quarters equal those of patch 0, the column quarters do not
    assert_close(pe[2, :192], pe[1, :192]) and not torch.allclose(pe[2, 192:], pe[1, 192:])
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed(14, 386)


def test_pos_embed_is_fixed_in_the_tower():
    torch.manual_seed(0)
    vit = image_tower("tiny")
    assert not vit.pos_embed.requires_grad
    assert_close(vit.pos_embed[0], sincos_pos_embed(8, 128))
    vit(torch.randn(2, 3, 32, 32)).sum().backward()
    assert vit.pos_embed.grad is None and vit.cls_token.grad is not None


def test_image_size_override():
    vit = image_tower("tiny", image_size=64)
    assert vit.pos_embed.shape == (1, 1 + 16 * 16, 128)
    assert vit(torch.randn(1, 3, 64, 64)).shape == (1, 128)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        image_tower("tiny", image_size=30)


# ---- tokenizer

def test_tokenizer_truncates_keeping_eot_last():
    long = " ".join(["triangle"] * 200)
    tokens = tokenize([long, "a dog"], context_length=77)
    assert tokens.shape == (2, 77) and tokens.dtype == torch.long
    assert tokens[0, 0] == SOT_ID and tokens[0, -1] == EOT_ID and (tokens[0] != 0).all()
    assert tokens[1, :4].tolist()[0] == SOT_ID and tokens[1, 3] == EOT_ID and (tokens[1, 4:] == 0).all()
    assert (tokens.argmax(-1) == torch.tensor([76, 3])).all()
    assert tokenize("a dog", context_length=5).tolist() == tokens[1:, :5].tolist()


def test_tokenizer_cleans_like_clip():
    assert tokenize("A  DOG &amp; a cat").tolist() == tokenize("a dog & a cat").tolist()


def test_tokenizer_remembers_texts_without_changing_their_ids():
    "Repeated captions come from a cache; the ids are open_clip's own for each length, and a caller's tensor is its own."
    from open_clip.tokenizer import SimpleTokenizer
    texts = ["a red cross and a purple star", "", "Ünïcode ✓ &amp; text", " ".join(["star"] * 90), "a red cross and a purple star"]
    for length in (5, 32, 77):
        first, again = tokenize(texts, length), tokenize(texts, length)
        assert first.tolist() == again.tolist() == SimpleTokenizer()(texts, context_length=length).tolist()
        first[0, 0] = -1
        assert tokenize(texts[0], length)[0, 0] == SOT_ID


def test_tokenizer_bad_input():
    with pytest.raises(TypeError, match="list of strings"):
        tokenize([1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        tokenize("a dog", context_length=1)


# ---- EOT pooling

def test_text_tower_pools_at_argmax():
    torch.manual_seed(0)
    txt = text_tower("tiny").eval()
    tokens = tokenize(["a red triangle", "a small blue circle on the left"], context_length=32)
    features = txt(tokens)
    # the features at every position, computed with the tower's own modules
    x = txt.token_embedding(tokens) + txt.positional_embedding
    x = txt.ln_final(txt.transformer(x, attn_mask=txt.attn_mask))
    eot = tokens.argmax(-1)
    assert_close(features, x[torch.arange(2), eot])
    assert not torch.allclose(features, x[:, -1])


# ---- bad input

def test_image_tower_bad_input_messages():
    vit = image_tower("tiny")
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\), got \(2, 1, 32, 32\)"):
        vit(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\), got \(2, 3, 64, 64\)"):
        vit(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"got \(3, 32, 32\)"):
        vit(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="floating-point.*uint8"):
        vit(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_images([[0.0]], 32)


def test_text_tower_bad_input_messages():
    txt = text_tower("tiny")
    tokens = tokenize(["a dog"], context_length=32)
    with pytest.raises(ValueError, match=r"\(B, 32\), got \(1, 77\)"):
        txt(tokenize(["a dog"]))
    with pytest.raises(ValueError, match=r"\(B, 32\), got \(32,\)"):
        txt(tokens[0])
    with pytest.raises(TypeError, match="integer.*float32"):
        txt(tokens.float())
    with pytest.raises(ValueError, match=r"\[0, 49408\)"):
        txt(tokens + VOCAB_SIZE)
    with pytest.raises(TypeError, match="tokenize"):
        check_tokens(["a dog"], 32)


def test_tower_config_overrides_and_unknown():
    assert tower_config("B", context_length=16).context_length == 16
    assert tower_config(TOWER_SIZES["L"]) == TOWER_SIZES["L"]
    with pytest.raises(ValueError, match="unknown tower size"):
        image_tower("M")


def test_text_kind_selects_the_tower_and_is_checked():
    "`text_kind` picks the bag or the transformer; a bad kind, or a transformer without layers, is a clear error."
    from meru_nb.encoders import BagTextTower, TextTower
    assert isinstance(text_tower("cpu"), TextTower) and isinstance(text_tower("cpu_bag"), BagTextTower)
    assert tower_config("cpu").text_layers == 2 and tower_config("cpu_bag").text_layers == 0
    with pytest.raises(ValueError, match="`text_kind` must be 'transformer' or 'bag', got 'rnn'"):
        tower_config("cpu", text_kind="rnn")
    with pytest.raises(ValueError, match="needs text_layers >= 1 and text_heads >= 1, got 0 and 0"):
        tower_config("cpu_bag", text_kind="transformer")
    bag = text_tower("cpu_bag")
    with pytest.raises(ValueError):
        bag(torch.zeros(2, 8, dtype=torch.long))             # wrong context length, named by check_tokens


# ---- open_clip towers

@pytest.fixture(scope="module")
def clip_and_file(tmp_path_factory):
    import open_clip
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-S-32").eval()
    path = tmp_path_factory.mktemp("weights") / "vit_s_32.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in clip.state_dict().items()}, "epoch": 3}, path)
    return clip, path


def test_open_clip_towers_round_trip(clip_and_file):
    clip, path = clip_and_file
    towers = open_clip_towers("ViT-S-32", weights=path)
    images, tokens = torch.randn(2, 3, 224, 224), tokenize(["a dog", "a cat"])
    with torch.no_grad():
        assert_close(towers.image.eval()(images), clip.encode_image(images))
        assert_close(towers.text.eval()(tokens), clip.encode_text(tokens))
    assert towers.logit_scale == pytest.approx(clip.logit_scale.item())
    assert towers.image.width == towers.text.width == 384


def test_open_clip_towers_safetensors_and_random(clip_and_file, tmp_path):
    from safetensors.torch import save_file
    clip, _ = clip_and_file
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    towers = open_clip_towers("ViT-S-32", weights=path)
    assert_close(towers.text.token_embedding.weight, clip.token_embedding.weight)
    random = open_clip_towers("ViT-S-32")
    assert not torch.allclose(random.text.token_embedding.weight, clip.token_embedding.weight)


def test_open_clip_towers_errors(clip_and_file, tmp_path):
    clip, path = clip_and_file
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        open_clip_towers("ViT-S-32", weights=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match=r"(?s)does not match open_clip model 'ViT-S-16'.*wrong shapes: visual\.positional_embedding"):
        open_clip_towers("ViT-S-16", weights=path)
    sd = dict(clip.state_dict()); sd.pop("ln_final.bias"); sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"(?s)missing keys: text\.ln_final\.bias.*unexpected keys: extra\.weight"):
        open_clip_towers("ViT-S-32", weights=tmp_path / "broken.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="state dict"):
        open_clip_towers("ViT-S-32", weights=tmp_path / "list.pt")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        open_clip_towers("ViT-Q-99")


def test_open_clip_towers_check_input(clip_and_file):
    _, path = clip_and_file
    towers = open_clip_towers("ViT-S-32", weights=path)
    with pytest.raises(ValueError, match=r"\(B, 3, 224, 224\), got \(1, 3, 32, 32\)"):
        towers.image(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 77\), got \(1, 32\)"):
        towers.text(tokenize("a dog", context_length=32))
