"""Reference checkpoint files (REFERENCE.md §7): state dicts written from the documented names and shapes."""
import pytest
import torch

from meru_nb.encoders import TOWER_SIZES, tokenize
from meru_nb.models import MERU, CLIPBaseline, build_model, export_reference, import_reference, to_reference


def documented_shapes(kind: str, size: str, embed_dim: int = 512) -> dict:
    "Every key of a reference state dict and its shape, written out from REFERENCE.md §7 (not from our code)."
    c = TOWER_SIZES[size]
    w, g, t, ctx = c.image_width, c.image_size // c.patch_size, c.text_width, c.context_length
    shapes = {"logit_scale": (), "pixel_mean": (3, 1, 1), "pixel_std": (3, 1, 1),
              "visual_proj.weight": (embed_dim, w), "textual_proj.weight": (embed_dim, t),
              "visual.cls_token": (1, 1, w), "visual.pos_embed": (1, 1 + g * g, w),
              "visual.patch_embed.proj.weight": (w, 3, c.patch_size, c.patch_size), "visual.patch_embed.proj.bias": (w,),
              "visual.norm.weight": (w,), "visual.norm.bias": (w,),
              "textual.token_embed.weight": (c.vocab_size, t), "textual.posit_embed": (ctx, t),
              "textual.attn_mask": (ctx, ctx), "textual.ln_final.weight": (t,), "textual.ln_final.bias": (t,)}
    if kind == "meru":
        shapes.update({"curv": (), "visual_alpha": (), "textual_alpha": ()})
    for n in range(c.image_depth):
        b = f"visual.blocks.{n}."
        shapes.update({b + "norm1.weight": (w,), b + "norm1.bias": (w,), b + "attn.qkv.weight": (3 * w, w),
                       b + "attn.qkv.bias": (3 * w,), b + "attn.proj.weight": (w, w), b + "attn.proj.bias": (w,),
                       b + "norm2.weight": (w,), b + "norm2.bias": (w,), b + "mlp.fc1.weight": (4 * w, w),
                       b + "mlp.fc1.bias": (4 * w,), b + "mlp.fc2.weight": (w, 4 * w), b + "mlp.fc2.bias": (w,)})
    for n in range(c.text_layers):
        b = f"textual.resblocks.{n}."
        shapes.update({b + "attn.in_proj_weight": (3 * t, t), b + "attn.in_proj_bias": (3 * t,),
                       b + "attn.out_proj.weight": (t, t), b + "attn.out_proj.bias": (t,),
                       b + "ln_1.weight": (t,), b + "ln_1.bias": (t,), b + "ln_2.weight": (t,), b + "ln_2.bias": (t,),
                       b + "mlp.c_fc.weight": (4 * t, t), b + "mlp.c_fc.bias": (4 * t,),
                       b + "mlp.c_proj.weight": (t, 4 * t), b + "mlp.c_proj.bias": (t,)})
    return shapes


def random_reference_file(path, kind: str, size: str, with_root: bool = False):
    "A checkpoint file of documented names and shapes, filled with random values (scalars in their ranges)."
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in documented_shapes(kind, size, TOWER_SIZES[size].embed_dim).items():
        if key == "textual.attn_mask":
            state[key] = torch.ones(shape, dtype=torch.bool).triu(1)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    state.update(logit_scale=torch.tensor(2.5), pixel_mean=torch.rand(3, 1, 1), pixel_std=0.2 + torch.rand(3, 1, 1))
    if kind == "meru":
        state.update(curv=torch.tensor(-0.5), visual_alpha=torch.tensor(-2.0), textual_alpha=torch.tensor(-2.5))
    if with_root:
        state["root"] = torch.randn(TOWER_SIZES[size].embed_dim)
    torch.save({"model": state, "iteration": 120000}, path)
    return state


@pytest.mark.parametrize("kind", ["meru", "clip"])
@pytest.mark.parametrize("size", ["S", "B", "L"])
def test_documented_names_and_shapes_match_ours(kind, size):
    "For S/B/L, our model in the reference's names has exactly the documented keys and shapes (meta device)."
    with torch.device("meta"):
        model = build_model(kind, size)
    ours = {k: tuple(v.shape) for k, v in to_reference(model.state_dict()).items()}
    assert ours == documented_shapes(kind, size)      # pixel stats (3, 1, 1) too: the paper's code loads it strictly


@pytest.mark.parametrize("kind", ["meru", "clip"])
def test_import_puts_every_tensor_in_place(kind, tmp_path):
    "Importing a documented ViT-S file lands each tensor where it belongs, scalars included; CLIP's root comes back."
    path = tmp_path / f"{kind}_vit_s.pth"
    state = random_reference_file(path, kind, "S", with_root=kind == "clip")
    model, extras = import_reference(path)
    assert type(model) is {"meru": MERU, "clip": CLIPBaseline}[kind]
    ours = model.state_dict()
    assert torch.equal(ours["textual.token_embedding.weight"], state["textual.token_embed.weight"])
    assert torch.equal(ours["textual.transformer.resblocks.11.mlp.c_proj.weight"], state["textual.resblocks.11.mlp.c_proj.weight"])
    assert torch.equal(ours["visual.blocks.7.attn.qkv.weight"], state["visual.blocks.7.attn.qkv.weight"])
    assert torch.equal(ours["pixel_mean"].flatten(), state["pixel_mean"].flatten())
    assert ours["logit_scale"].item() == 2.5 and extras["iteration"] == 120000
    if kind == "meru":
        assert ours["log_curv"].item() == -0.5 and ours["log_textual_alpha"].item() == -2.5
    else:
        assert torch.equal(extras["root"], state["root"])


def test_round_trip_reproduces_outputs(tmp_path):
    "export_reference then import_reference gives a model with the same embeddings (tiny towers)."
    torch.manual_seed(0)
    model = build_model("meru", "tiny")
    images, tokens = torch.rand(4, 3, 32, 32), tokenize(["a red square", "a circle", "an image", "a star"], 32)
    path = export_reference(model, tmp_path / "meru_vit_tiny.pth")
    again, _ = import_reference(path, size="tiny")
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), again.encode_image(images))
        assert torch.equal(model.encode_text(tokens), again.encode_text(tokens))


def test_wrong_size_names_the_mismatch(tmp_path):
    "A ViT-S file imported as B fails with one error listing the mis-shaped keys; a missing file is named."
    path = tmp_path / "meru_vit_s.pth"
    random_reference_file(path, "meru", "S")
    with pytest.raises(ValueError, match=r"(?s)does not match a MERU model of size 'B'.*wrong shapes: .*visual\."):
        import_reference(path, size="B")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        import_reference(tmp_path / "nowhere.pth")


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    "A file without `textual_proj.weight` and with an extra key is refused, naming both."
    path = tmp_path / "meru_vit_s.pth"
    random_reference_file(path, "meru", "S")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model"]["textual_proj.weight"]
    ckpt["model"]["visual.head.weight"] = torch.zeros(3)
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"(?s)missing keys: textual_proj\.weight.*unexpected keys: visual\.head\.weight"):
        import_reference(path)
