"""The models across processes and optimizer steps: gather, targets, gradients and clamps."""
import json
import math

import pytest
import torch
import torch.distributed as tdist

from meru_nb.models import MERU, BagOfTokensTower, CLIPBaseline, PixelTower, build_model, save

MODELS = {"clip": CLIPBaseline, "meru": MERU}
WORLD, LOCAL_BATCH = 2, 4


def build(kind: str):
    "The same small model in every process."
    torch.manual_seed(0)
    return MODELS[kind](PixelTower(image_size=8, width=16), BagOfTokensTower(vocab_size=100, width=16), embed_dim=8)


def batch():
    "A fixed batch of WORLD * LOCAL_BATCH pairs (pixels in [0, 1]; tokens with EOT = 99 at varying positions)."
    g = torch.Generator().manual_seed(1)
    images = torch.rand(WORLD * LOCAL_BATCH, 3, 8, 8, generator=g)
    tokens = torch.randint(1, 98, (WORLD * LOCAL_BATCH, 10), generator=g)
    tokens[torch.arange(len(tokens)), torch.arange(len(tokens)) % 9 + 1] = 99
    return images, tokens


def loss_and_grads(model, images, tokens):
    "Loss of one step and the gradient of every parameter."
    model.zero_grad()
    loss = model(images, tokens)["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def worker(rank: int, kind: str, folder: str):
    "One process: its half of the batch, gathered features, gradients averaged over processes as DDP does."
    tdist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    try:
        model = build(kind)
        images, tokens = batch()
        part = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        loss, grads = loss_and_grads(model, images[part], tokens[part])
        for g in grads.values():
            tdist.all_reduce(g)
            g /= WORLD
        torch.save({"loss": loss, "grads": grads}, f"{folder}/rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


@pytest.mark.parametrize("kind", MODELS)
def test_two_processes_equal_one(kind, tmp_path, spawn_ranks):
    "Two gloo processes on halves of a batch: mean loss and averaged gradients equal one process on the whole batch."
    spawn_ranks(worker, kind, str(tmp_path), world=WORLD, timeout=120)
    outs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    loss, grads = loss_and_grads(build(kind), *batch())
    torch.testing.assert_close(sum(o["loss"] for o in outs) / WORLD, loss, rtol=1e-5, atol=1e-6)
    for g in (o["grads"] for o in outs):
        assert g.keys() == grads.keys()
        for name in grads:
            torch.testing.assert_close(g[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_one_process_targets_are_the_diagonal():
    "Without a process group the gather is the identity and the targets are arange(B)."
    from meru_nb.models import gather_features, local_targets
    x = torch.randn(5, 3)
    assert gather_features(x) is x
    assert torch.equal(local_targets(5), torch.arange(5))


def test_clamps_hold_after_a_step_past_them():
    "An AdamW step with a huge learning rate pushes the scalars out; clamp_ brings each back to its bound."
    model = build("meru")
    opt = torch.optim.AdamW(model.parameters(), lr=100.0, weight_decay=0.0)
    images, tokens = batch()
    for sign in (-1.0, 1.0):
        opt.zero_grad()
        for name in ("logit_scale", "log_curv", "log_visual_alpha", "log_textual_alpha"):
            getattr(model, name).grad = torch.tensor(sign)   # push every scalar the same way
        opt.step()
        model.clamp_()
        assert model.logit_scale.item() <= math.log(100) + 1e-6
        assert model.log_visual_alpha.item() <= 0 and model.log_textual_alpha.item() <= 0
        assert 0.1 - 1e-6 <= model.curvature().item() <= 10 + 1e-6
    out = model(images, tokens)
    assert out["loss"].isfinite()


@pytest.mark.parametrize("bad", [{"curv_init": 0.0}, {"curv_init": -1.0}, {"entail_weight": -0.1}])
def test_bad_model_arguments(bad):
    "A non-positive initial curvature or a negative entailment weight is refused with its name."
    with pytest.raises(ValueError, match=next(iter(bad))):
        MERU(PixelTower(), BagOfTokensTower(), **bad)


@pytest.mark.parametrize("kind, options, match", [
    ("vit", {}, "unknown model kind 'vit'"),
    ("clip", {"curv_init": 2.0}, "apply to MERU and its descendants only"),
    ("meru", {"image_widht": 64}, r"unknown options \['image_widht'\]"),
])
def test_build_model_refuses_bad_options(kind, options, match):
    "build_model names a wrong kind, a MERU option given to CLIP, or a misspelt option."
    from meru_nb.models import build_model
    with pytest.raises(ValueError, match=match):
        build_model(kind, "tiny", **options)


@pytest.mark.parametrize("kind", MODELS)
def test_save_load_round_trip(kind, tmp_path):
    "A saved model loads back from its folder alone with identical parameters, scalars and config."
    from meru_nb.models import build_model, load, save
    model = build_model(kind, "tiny", **({"curv_init": 0.5} if kind == "meru" else {}))
    with torch.no_grad():
        model.logit_scale.add_(0.25)                      # something that differs from a fresh model
    save(model, tmp_path / "run")
    again = load(tmp_path / "run")
    assert type(again) is type(model) and again.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_names_what_is_missing(tmp_path):
    "Loading a folder without the saved files says which file is missing; a hand-built model cannot be saved."
    from meru_nb.models import load, save
    with pytest.raises(FileNotFoundError, match="config.json"):
        load(tmp_path)
    with pytest.raises(ValueError, match="build_model"):
        save(MERU(PixelTower(), BagOfTokensTower()), tmp_path)


def test_saved_weights_have_the_same_file_mode_as_the_config(tmp_path):
    "model.safetensors is written like config.json (the umask's mode), not 0600 as a temporary file would be."
    import os
    from meru_nb.models import build_model, save
    folder = save(build_model("clip", "tiny"), tmp_path / "m")
    modes = {name: os.stat(folder / name).st_mode & 0o777 for name in ("model.safetensors", "config.json")}
    assert modes["model.safetensors"] == modes["config.json"], modes


def test_a_folder_saved_before_the_scalars_were_renamed_loads(tmp_path):
    "Folders of format 1 name the scalars curv, visual_alpha, textual_alpha (their logs): `load` reads them as log_*."
    import json
    from safetensors.torch import load_file, save_file
    from meru_nb.models import REFERENCE_SCALAR_NAMES, build_model, load, save
    torch.manual_seed(0)
    model = build_model("meru", "tiny")
    with torch.no_grad():
        model.log_curv.fill_(0.3); model.log_visual_alpha.fill_(-1.5)
    folder = save(model, tmp_path / "old")
    state = load_file(str(folder / "model.safetensors"))
    save_file({REFERENCE_SCALAR_NAMES.get(k, k): v for k, v in state.items()}, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "meru_nb.models/2"
    (folder / "config.json").write_text(json.dumps({**config, "format": "meru_nb.models/1"}))
    back = load(folder)
    assert back.curvature().item() == pytest.approx(math.exp(0.3)) and back.log_visual_alpha.item() == -1.5
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    (folder / "config.json").write_text(json.dumps(config))           # old names under the new format: refused
    with pytest.raises(ValueError, match="missing keys: log_curv"):
        load(folder)


def test_save_refuses_a_run_folder(tmp_path):
    "Saving a model into a training run's folder would replace the run's config.json: refused, the folder untouched."
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"out_dir": str(run), "model": "meru"}))
    (run / "log.jsonl").write_text('{"step": 1}\n')
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(ValueError, match="holds a training run"):
        save(build_model("clip", "tiny"), run)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    save(build_model("clip", "tiny"), run / "model")         # its model/ subfolder is where weights go
    assert (run / "model" / "config.json").is_file()
