"""The third model kind: HyCoCLIP's boxes, its saved weights, its runs (resume, workers, the CLI) and its two-process loss."""
import json
import subprocess
import sys

import pytest
import torch

from meru_nb.hycoclip import BoxCollate, BoxedScenes, HyCoCLIP, object_box
from meru_nb.models import build_model, load, save
from meru_nb.checkpoint import read_log
from meru_nb.config import PRESETS, TrainConfig
from meru_nb.train import train


def tiny(tmp_path, name="run", **kw):
    base = dict(model="hycoclip", out_dir=str(tmp_path / name), steps=4, batch_size=8, warmup_steps=1, ckpt_every=0,
                progress=False, device="cpu", precision="fp32", n_samples=64)
    return TrainConfig(**{**base, **kw})


def test_boxes_are_pure_functions_of_seed_and_index():
    a, b = BoxedScenes(50, 32, seed=4), BoxedScenes(50, 32, seed=4)
    for i in (0, 7, 49):
        x, y = a[i], b[i]
        assert torch.equal(x[0], y[0]) and torch.equal(x[2], y[2]) and x[1] == y[1] and x[3] == y[3] and x[4] == y[4]
    assert BoxedScenes(50, 32, seed=5).sample(3).text != a.sample(3).text or BoxedScenes(50, 32, seed=5).sample(4).text != a.sample(4).text


def test_boxes_stay_inside_the_image():
    ds = BoxedScenes(300, 32, seed=1)
    for i in range(300):
        s = ds.sample(i)
        for obj in s.scene.objects:
            x0, y0, x1, y1 = object_box(obj)
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and abs((x1 - x0) - (y1 - y0)) < 1e-12


def test_save_load_round_trip_and_plugin_import(tmp_path):
    "A saved HyCoCLIP loads back as HyCoCLIP, through `meru_nb.load` and through `models.load` alone in a fresh process: its entry point imports it."
    torch.manual_seed(0)
    model = build_model("hycoclip", "tiny", entail_weight=0.1)
    folder = save(model, tmp_path / "m")
    again = load(folder)
    assert type(again) is HyCoCLIP and again.entail_weight == 0.1
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    for code in ("import sys, meru_nb\nm = meru_nb.load(sys.argv[1])",
                 "import sys\nfrom meru_nb.models import load\nassert 'meru_nb.hycoclip' not in sys.modules\nm = load(sys.argv[1])"):
        code += "\nassert 'meru_nb.hycoclip' in sys.modules; print(type(m).__name__)"
        out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip() == "HyCoCLIP", out.stderr


def test_the_core_chapters_do_not_import_hycoclip_or_finetune():
    "Configs, loaders, the loop and the evaluation import neither chapter beyond MERU; a HyCoCLIP config imports hycoclip, through its entry point."
    code = ("import sys\nimport meru_nb.train, meru_nb.evaluate, meru_nb.cli\n"
            "from meru_nb.config import PRESETS, TrainConfig\n"
            "before = sorted(m for m in ('meru_nb.hycoclip', 'meru_nb.finetune') if m in sys.modules)\n"
            "TrainConfig(model='hycoclip'); print(before, 'builtin_hycoclip_vit_s' in PRESETS, 'meru_nb.hycoclip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "True", "True"]


def test_hycoclip_trains_on_the_built_in_scenes_only(tmp_path):
    with pytest.raises(ValueError, match="'builtin' for model='hycoclip'"):
        tiny(tmp_path, data=str(tmp_path / "pairs.csv"))
    assert "builtin_hycoclip_vit_s" in PRESETS and "hycoclip_vit_b" not in PRESETS


def test_run_logs_every_term_and_resumes_exactly(tmp_path):
    "Four straight steps equal two, a stop, and two more from the checkpoint; the log has the eight loss terms."
    train(tiny(tmp_path, "straight"))
    train(tiny(tmp_path, "halves", stop_at=2, ckpt_every=1))
    train(tiny(tmp_path, "halves", ckpt_every=1, resume=True))
    a, b = read_log(tmp_path / "straight"), read_log(tmp_path / "halves")
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and len(a) == 4
    terms = {"contrastive_box_image", "contrastive_box_text", "entail_text_image", "entail_box_text_box_image",
             "entail_box_image_image", "entail_box_text_text", "contrastive_loss", "entailment_loss"}
    assert terms <= set(a[-1]) and all(all(map(lambda k: r[k] >= 0, terms)) for r in a)
    assert type(load(tmp_path / "straight" / "model")) is HyCoCLIP


def test_workers_give_the_same_run(tmp_path):
    train(tiny(tmp_path, "w0", steps=2, num_workers=0))
    train(tiny(tmp_path, "w2", steps=2, num_workers=2))
    assert [r["loss"] for r in read_log(tmp_path / "w0")] == [r["loss"] for r in read_log(tmp_path / "w2")]


def test_command_line_trains_hycoclip(tmp_path):
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "-c", "import sys; from meru_nb.cli import main; sys.exit(main())", "train", "--model", "hycoclip", "--out-dir", str(out), "--steps", "2",
                    "--batch-size", "8", "--warmup-steps", "1", "--n-samples", "32", "--progress", "false",
                    "--device", "cpu"], check=True, capture_output=True, text=True)
    assert json.loads((out / "config.json").read_text())["model"] == "hycoclip" and len(read_log(out)) == 2


def test_forward_without_boxes_is_refused():
    model = build_model("hycoclip", "tiny")
    batch = BoxCollate(model.config["towers"]["context_length"])([BoxedScenes(4, 32)[i] for i in range(4)])
    with pytest.raises(ValueError, match="pairs with boxes"):
        model(batch[0], batch[1])


def test_meru_from_a_clip_run_resumes_exactly_and_checks_its_start(tmp_path):
    "init_from: a finished CLIP run seeds MERU; straight and interrupted runs agree; bad starts fail before the folder exists."
    train(TrainConfig(model="clip", out_dir=str(tmp_path / "clip"), steps=2, batch_size=8, warmup_steps=1, ckpt_every=0,
                      progress=False, device="cpu", precision="fp32", n_samples=64))
    base = dict(model="meru", init_from=str(tmp_path / "clip"), steps=4, batch_size=8, warmup_steps=1, progress=False,
                device="cpu", precision="fp32", n_samples=64, train_blocks=0)
    train(TrainConfig(out_dir=str(tmp_path / "straight"), ckpt_every=0, **base))
    train(TrainConfig(out_dir=str(tmp_path / "halves"), ckpt_every=1, stop_at=2, **base))
    train(TrainConfig(out_dir=str(tmp_path / "halves"), ckpt_every=1, resume=True, **base))
    assert [r["loss"] for r in read_log(tmp_path / "straight")] == [r["loss"] for r in read_log(tmp_path / "halves")]
    clip, meru = load(tmp_path / "clip" / "model"), load(tmp_path / "straight" / "model")
    frozen = [k for k in clip.state_dict() if k.startswith(("visual.", "textual.")) and "running" not in k and "num_batches" not in k]
    assert frozen and all(torch.equal(clip.state_dict()[k], meru.state_dict()[k]) for k in frozen)   # train_blocks=0
    with pytest.raises(ValueError, match="`init_from` must be empty unless model='meru'"):
        TrainConfig(model="clip", init_from=str(tmp_path / "clip"))
    with pytest.raises(ValueError, match="`train_blocks` must be -1, or a whole number >= 0 with init_from"):
        TrainConfig(train_blocks=1)
    with pytest.raises(ValueError, match="holds a 'meru' model"):
        train(TrainConfig(out_dir=str(tmp_path / "again"), **{**base, "init_from": str(tmp_path / "straight")}))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(TrainConfig(out_dir=str(tmp_path / "gone"), **{**base, "init_from": str(tmp_path / "nowhere")}))
    assert not (tmp_path / "again").exists() and not (tmp_path / "gone").exists()


def test_scenes_and_crops_share_one_pass_per_tower(monkeypatch):
    "Batch norms must see scenes and crops in one batch: one encode_image and one encode_text call per forward, of 2B rows."
    model = build_model("hycoclip", "cpu", image_size=32)
    batch = BoxCollate(model.config["towers"]["context_length"])([BoxedScenes(6, 32)[i] for i in range(6)])
    calls = []
    for name in ("encode_image", "encode_text"):
        original = getattr(model, name)
        monkeypatch.setattr(model, name, lambda x, *a, _f=original, _n=name, **k: calls.append((_n, len(x))) or _f(x, *a, **k))
    model(*batch)
    assert sorted(calls) == [("encode_image", 12), ("encode_text", 12)]
