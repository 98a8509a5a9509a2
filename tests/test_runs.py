"""The papermill run notebooks: a tiny training run end to end, and unknown parameters reported by name."""
import json
from pathlib import Path

import papermill as pm
import pytest

from meru_nb.embed import load_model
from meru_nb.evaluate import read_results
from meru_nb.zeroshot import zero_shot_builtin

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
TINY = dict(size="tiny", patch_size=0, image_size=32, n_samples=32, steps=2, batch_size=4, warmup_steps=1,
            ckpt_every=0, progress=False, pretrain_text=3, pretrain_image=2)   # the towers alone: a few steps, not 750


def outputs(nb: dict) -> str:
    "The text of every output of an executed notebook (not its sources)."
    return json.dumps([c.get("outputs", []) for c in nb["cells"]])


def run(notebook: str, out: Path, **parameters) -> dict:
    "Execute a run notebook with papermill in `out`'s folder; returns the executed notebook."
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NBS / notebook), str(out), parameters=parameters, cwd=str(out.parent),
                        kernel_name="python3", progress_bar=False)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    "A two-step tiny MERU and CLIP trained through nbs/20_train.ipynb, evaluated through nbs/21_evaluate.ipynb."
    folder = tmp_path_factory.mktemp("runs")
    for kind in ("meru", "clip"):
        run("20_train.ipynb", folder / kind / "train.ipynb", model=kind, out_dir=str(folder / kind), **TINY)
        run("21_evaluate.ipynb", folder / kind / "evaluate.ipynb", run_dir=str(folder / kind), n_zero_shot=60,
            n_retrieval=40, n_probe=60, n_hierarchy=30)
    return folder


@pytest.fixture(scope="module")
def trained(runs) -> Path:
    return runs / "meru"


def test_train_notebook_writes_the_run(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "log.jsonl", "checkpoint.pt", "model", "curves.png", "summary.json"} <= names
    config = json.loads((trained / "config.json").read_text())
    assert config["steps"] == 2 and config["model"] == "meru" and config["image_size"] == 32
    assert config["hard_negatives"] is True and config["binding_share"] == 0.6          # the binding start, by default
    assert (config["pretrain_text"], config["pretrain_image"]) == (3, 2)                 # and what -p passed over it
    assert json.loads((trained / "pretrain.json").read_text())["text"]["steps"] == 3
    assert json.loads((trained / "summary.json").read_text())["steps_done"] == 2


def test_the_binding_start_is_off_where_it_cannot_be(tmp_path):
    "binding_start=False trains the paper's start; other data than the built-in scenes never gets it."
    tiny = {k: v for k, v in TINY.items() if not k.startswith("pretrain_")}
    run("20_train.ipynb", tmp_path / "off.ipynb", model="clip", out_dir=str(tmp_path / "off"), binding_start=False, **tiny)
    config = json.loads((tmp_path / "off" / "config.json").read_text())
    assert (config["hard_negatives"], config["binding_share"], config["pretrain_text"]) == (False, 0.0, 0)
    assert not (tmp_path / "off" / "pretrain.json").exists()
    table = tmp_path / "pairs.csv"                           # a table of the user's own pictures and captions
    from PIL import Image
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / f"{i}.png")
    table.write_text("filepath,title\n" + "".join(f"{i}.png,a picture {i}\n" for i in range(4)))
    run("20_train.ipynb", tmp_path / "table.ipynb", model="meru", data=str(table), out_dir=str(tmp_path / "table"), **tiny)
    config = json.loads((tmp_path / "table" / "config.json").read_text())
    assert (config["hard_negatives"], config["binding_share"], config["pretrain_text"]) == (False, 0.0, 0)


def test_unknown_parameter_is_reported(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match=r"unknown parameter\(s\) \['learning_rate'\]"):
        run("20_train.ipynb", tmp_path / "bad.ipynb", learning_rate=1e-3, out_dir=str(tmp_path / "bad"), **TINY)
    assert not (tmp_path / "bad").exists()


def test_a_pipe_url_needs_allow_pipe(tmp_path):
    "A parameters file (papermill -f) whose data is a pipe: URL runs no shell command unless allow_pipe is True (issue 29)."
    params = tmp_path / "params.yaml"
    params.write_text(f"data: 'pipe:touch {tmp_path / 'ran'}; cat ok.tar'\nout_dir: {tmp_path / 'bad'}\n")
    import yaml
    with pytest.raises(pm.PapermillExecutionError, match=r"is a webdataset pipe: URL, which runs a shell command: pass -p allow_pipe True"):
        run("20_train.ipynb", tmp_path / "bad.ipynb", **{**TINY, **yaml.safe_load(params.read_text())})
    assert not (tmp_path / "ran").exists() and not (tmp_path / "bad").exists()


def test_parameter_of_the_wrong_type_is_reported(tmp_path):
    "`papermill -p steps five` passes the text 'five': refused by the field's type, by name, before the folder exists."
    with pytest.raises(pm.PapermillExecutionError, match=r"`steps` must be a whole number, got steps='five'"):
        run("20_train.ipynb", tmp_path / "bad.ipynb", out_dir=str(tmp_path / "bad"), **{**TINY, "steps": "five"})
    assert not (tmp_path / "bad").exists()


def test_evaluate_notebook_writes_results(runs):
    for kind in ("meru", "clip"):
        results = read_results(runs / kind)
        assert results["kind"] == kind and results["config"]["model"] == kind
        shape = results["zero_shot_shape"]
        top1 = shape["top1"]
        assert shape["n"] == 60 and len(top1.items) == 60 and top1.value == pytest.approx(sum(top1.items) / 60)
        assert top1.interval[0] <= top1.value <= top1.interval[1]
        again = zero_shot_builtin(load_model(runs / kind), 60, seed=1000, attribute="shape")   # the notebook's test scenes
        assert again["top1"] == pytest.approx(top1.value)
        assert [int(p == t) for p, t in zip(again["pred"], again["target"])] == top1.items, \
            "results.json does not hold what the saved model scores"
        assert {f"{kind}_levels.png", f"{kind}_traversal.png", f"{kind}_poincare.png"} <= \
            {p.name for p in (runs / kind / "figures").iterdir()}


def test_evaluate_notebook_reports_unknown_parameters(runs, tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match=r"unknown parameter\(s\) \['n_zeroshot'\]"):
        run("21_evaluate.ipynb", tmp_path / "bad.ipynb", run_dir=str(runs / "meru"), n_zeroshot=10)


def test_results_chapter_reads_the_runs(runs, tmp_path, monkeypatch):
    "The results chapter shows both runs side by side; without runs it says so."
    monkeypatch.setenv("MERU_NB_RUNS", str(runs))
    nb = run("22_results.ipynb", tmp_path / "results.ipynb")
    text = outputs(nb)
    assert "| metric | MERU | CLIP |" in text and "zero-shot shape, top-1 %" in text
    assert "**met**" in text or "**not met**" in text
    assert "No evaluated runs" not in text
    monkeypatch.setenv("MERU_NB_RUNS", str(tmp_path / "empty"))
    nb = run("22_results.ipynb", tmp_path / "none.ipynb")
    assert "No evaluated runs" in outputs(nb) and "| metric |" not in outputs(nb)


def test_make_run_trains_its_preset_which_is_the_studies_recipe_with_the_binding_start():
    "nbs/20_train.ipynb starts from a preset (make run: cpu_meru, cpu_clip) and holds no value of its own; each preset is `study.recipe` with `RUN_START` for its model: make run's runs are the runs the studies chose."
    import dataclasses
    from meru_nb.config import CPU_RECIPE, PRESETS, TrainConfig
    from meru_nb.study import RUN_START, recipe
    cell = next(c for c in json.loads((NBS / "20_train.ipynb").read_text())["cells"]
                if "parameters" in c.get("metadata", {}).get("tags", []))
    values = {}
    exec("".join(cell["source"]), {}, values)
    assert (values.pop("preset"), values.pop("binding_start"), values.pop("allow_pipe")) == ("cpu_meru", True, False)
    assert values and all(v is None for v in values.values()), values           # the recipe's values live in the preset
    assert "-p preset cpu_$$m" in (ROOT / "Makefile").read_text()
    for model in ("meru", "clip"):
        preset = TrainConfig(**PRESETS[f"cpu_{model}"])
        studied = recipe(CPU_RECIPE["entail_weight"], preset.seed, preset.out_dir, CPU_RECIPE["steps"], model=model, **RUN_START)
        skip = {"ckpt_every", "progress"}                                      # the studies keep no checkpoints, show no bar
        mine = {k: v for k, v in dataclasses.asdict(preset).items() if k not in skip}
        theirs = {k: v for k, v in dataclasses.asdict(studied).items() if k not in skip}
        if model == "clip":       # CLIP ignores MERU's options; the recipe leaves them at 0 for it
            for k in ("entail_start", "entail_warmup", "entail_gate", "text_floor"): mine.pop(k); theirs.pop(k)
        assert mine == theirs, {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
