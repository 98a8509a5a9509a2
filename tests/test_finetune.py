"""MERU from a CLIP: our CLIP runs and open_clip checkpoints on disk (chapter 11c)."""
import logging

import open_clip
import pytest
import torch

from meru_nb.finetune import OPEN_CLIP_PREFIX, meru_from_open_clip, set_trainable, start_from_clip
from meru_nb.models import MERU, build_on_open_clip, load, save
from meru_nb.config import TrainConfig

logging.getLogger().setLevel(logging.ERROR)        # open_clip warns that it loaded no pretrained weights


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    "A small open_clip model with random weights, saved as a released checkpoint would be."
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-S-32")
    path = tmp_path_factory.mktemp("oc") / "vit_s_32.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_meru_on_open_clip_features_are_its_embeddings(checkpoint, tmp_path):
    source, path = checkpoint
    images, tokens = torch.rand(4, 3, 224, 224), torch.randint(1, 49406, (4, 77))
    tokens[:, -1] = 49407
    meru = meru_from_open_clip("ViT-S-32", path, images, tokens)
    pre = source.visual.preprocess_cfg
    mean, std = torch.tensor(pre["mean"]).view(1, 3, 1, 1), torch.tensor(pre["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(meru.encode_image(images, project=False), source.encode_image((images - mean) / std))
        torch.testing.assert_close(meru.encode_text(tokens, project=False), source.encode_text(tokens))
        lifted = meru.encode_image(images, project=False) * meru.log_visual_alpha.exp()
    assert lifted.norm(dim=-1).median().item() == pytest.approx(1.0, abs=1e-4)
    assert meru.curvature().item() == 1.0 and meru.log_visual_alpha.item() <= 0
    back = load(save(meru, tmp_path / "m"))
    assert type(back) is MERU and back.config["open_clip"] == "ViT-S-32"
    for (k, a), b in zip(meru.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k


def test_train_blocks_reach_open_clip_final_norms(checkpoint):
    meru = build_on_open_clip("meru", "ViT-S-32", checkpoint[1])
    counts = set_trainable(meru, 1)
    trainable = {n for n, p in meru.named_parameters() if p.requires_grad}
    assert "visual.ln_post.weight" in trainable and "textual.ln_final.weight" in trainable
    assert "visual.transformer.resblocks.11.attn.in_proj_weight" in trainable
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" not in trainable
    assert 0 < counts["visual"] < sum(p.numel() for p in meru.visual.parameters())


@pytest.mark.parametrize("spec, match", [("open_clip:ViT-S-32", "NAME:WEIGHTS"), ("open_clip::w.pt", "NAME:WEIGHTS"),
                                         ("open_clip:no-such-model:w.pt", "unknown open_clip model")])
def test_bad_open_clip_specs_are_one_clear_error(spec, match):
    cfg = TrainConfig(model="meru", init_from=spec, image_size=224)
    with pytest.raises(ValueError, match=match):
        start_from_clip(spec, cfg, None)


def test_image_size_must_be_the_models(checkpoint):
    cfg = TrainConfig(model="meru", init_from=f"{OPEN_CLIP_PREFIX}ViT-S-32:{checkpoint[1]}", image_size=64)
    with pytest.raises(ValueError, match="image_size"):
        start_from_clip(cfg.init_from, cfg, None)


def test_a_missing_weights_file_is_named(tmp_path):
    cfg = TrainConfig(model="meru", init_from=f"open_clip:ViT-S-32:{tmp_path / 'none.pt'}", image_size=224)
    with pytest.raises(FileNotFoundError, match="none.pt"):
        start_from_clip(cfg.init_from, cfg, lambda ctx: (torch.rand(2, 3, 224, 224), torch.randint(1, 9, (2, ctx))))
