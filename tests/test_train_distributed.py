"""The training loop across two gloo processes, and its command line (options, presets, YAML files, torchrun)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import yaml

import meru_nb.train as T
from meru_nb.checkpoint import read_log
from meru_nb.config import PRESETS, TrainConfig, config_from_args, write_presets
from meru_nb.distributed import wrap_model
from meru_nb.pipelines import StepSampler, make_loader

ROOT = Path(__file__).resolve().parent.parent
WORLD = 2


def config(folder, name, **kw) -> TrainConfig:
    "A tiny CPU run: batch 8 (4 per process), two optimizer steps."
    base = dict(out_dir=str(Path(folder) / name), steps=2, batch_size=8, warmup_steps=1, ckpt_every=0, progress=False,
                device="cpu", precision="fp32", n_samples=64, lr=1e-3)
    return TrainConfig(**{**base, **kw})


def first_step(cfg: TrainConfig, rank: int = 0, world: int = 1) -> tuple:
    "Loss and gradients of the first step, built with the loop's own pieces (model, wrapper, loader)."
    device = torch.device("cpu")
    model, *_ = T._build(cfg, device)
    net = wrap_model(model, cfg, device, world)
    batch = next(iter(make_loader(cfg, model.config["towers"]["context_length"], 0, 1, rank, world)))
    loss = net(*batch.inputs)["loss"]                 # (images, tokens[, boxes])
    loss.backward()                                  # under DDP: gradients averaged over the processes
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def worker(rank: int, folder: str, kind: str):
    tdist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    try:
        loss, grads = first_step(config(folder, "step", model=kind), rank, WORLD)
        tdist.all_reduce(loss)
        T.train(config(folder, "two", model=kind))
        torch.save({"loss": loss / WORLD, "grads": grads}, f"{folder}/rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


@pytest.mark.parametrize("kind", ["meru", "clip", "hycoclip"])
def test_two_processes_equal_one(kind, tmp_path, spawn_ranks):
    "Two gloo processes: the first step's loss and gradients, and two whole steps of `train`, equal one process."
    spawn_ranks(worker, str(tmp_path), kind, world=WORLD)
    outs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    loss, grads = first_step(config(tmp_path, "single-step", model=kind))
    for out in outs:                                  # every rank holds the same averaged gradients
        torch.testing.assert_close(out["loss"], loss, rtol=1e-5, atol=1e-6)
        assert out["grads"].keys() == grads.keys() and len(grads) > 10
        for name in grads:
            torch.testing.assert_close(out["grads"][name], grads[name], rtol=1e-4, atol=1e-6, msg=name)
    single = T.train(config(tmp_path, "single", model=kind))
    from meru_nb.models import load
    both = load(tmp_path / "two" / "model")
    for (name, a), b in zip(single.state_dict().items(), both.state_dict().values()):
        if name.endswith(("qkv.bias", "in_proj_bias")):
            # the key bias cancels in the softmax: its gradient is rounding noise, which Adam's first steps
            # scale up to +-lr whatever its size; compare the query and value biases only
            third = len(a) // 3
            a, b = torch.cat([a[:third], a[2 * third:]]), torch.cat([b[:third], b[2 * third:]])
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    logs = read_log(tmp_path / "single"), read_log(tmp_path / "two")
    assert [r["step"] for r in logs[1]] == [1, 2]                     # rank 0 alone wrote the log
    for a, b in zip(*logs):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and b["samples_per_s_per_device"] == pytest.approx(b["samples_per_s"] / 2)


def test_batch_must_split_across_processes(tmp_path):
    with pytest.raises(ValueError, match="batch_size.*=6.*4 processes"):
        StepSampler(64, 6, 0, 0, 1, rank=0, world_size=4)


def test_presets_and_files_combine(tmp_path):
    "defaults < preset < YAML file < single options; unknown names are errors that name them."
    params = tmp_path / "p.yaml"
    params.write_text("lr: 0.001\nsteps: 50\n")
    cfg = config_from_args(["--preset", "clip_vit_s", "-f", str(params), "--steps", "9000", "--compile", "yes"])
    assert (cfg.model, cfg.size, cfg.batch_size, cfg.lr, cfg.steps, cfg.compile) == ("clip", "S", 2048, 1e-3, 9000, True)
    assert config_from_args([]) == TrainConfig()
    params.write_text("lr: 0.001\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['learning_rate'\]"):
        config_from_args(["-f", str(params)])
    with pytest.raises(ValueError, match="unknown preset 'meru_vit_h'"):
        config_from_args(["--preset", "meru_vit_h"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        config_from_args(["-f", str(tmp_path / "nope.yaml")])
    with pytest.raises(SystemExit):
        config_from_args(["--learning-rate", "0.1"])


@pytest.mark.parametrize("bad, match", [(dict(lr=0.0), "`lr` must be positive, got lr=0.0"),
                                        (dict(lr=-1e-3), "lr=-0.001"), (dict(model="vit"), "model='vit'"),
                                        (dict(size="XL"), "size='XL'"), (dict(precision="fp8"), "precision='fp8'")])
def test_bad_config_names_the_value(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


@pytest.mark.parametrize("data", ["missing.csv", "missing-{000..003}.tar", "nowhere/*.tar"])
def test_missing_data_fails_before_training(tmp_path, data):
    cfg = config(tmp_path, "run", data=str(tmp_path / data))
    with pytest.raises(FileNotFoundError, match="missing|nowhere"):
        T.train(cfg)
    assert not (tmp_path / "run").exists()


def test_params_files_are_the_presets(tmp_path):
    "The YAML files papermill reads under params/ are exactly what `write_presets` makes of PRESETS (run it after a change)."
    files = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "params").glob("*.yaml")}
    presets = {k: v for k, v in files.items() if k in PRESETS}
    assert presets.keys() == PRESETS.keys()
    for name, values in presets.items():
        assert values == PRESETS[name], name
    for path in write_presets(tmp_path):
        assert path.read_text() == (ROOT / "params" / path.name).read_text(), f"params/{path.name} differs from write_presets"
    for name, values in files.items():               # every file (presets and the CPU demo) is valid
        TrainConfig(**values)


def test_module_entry_point_trains(tmp_path):
    "`python -m meru_nb.train` (what torchrun starts) runs a tiny job end to end and writes the run folder."
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "meru_nb.train", "--out-dir", str(out), "--steps", "2", "--batch-size", "4",
           "--n-samples", "16", "--warmup-steps", "0", "--progress", "false", "--device", "cpu", "--keep-every", "1",
           "--ckpt-every", "1"]
    subprocess.run(cmd, check=True, cwd=tmp_path, timeout=300)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "log.jsonl", "checkpoint.pt", "checkpoint_0000001.pt", "checkpoint_0000002.pt",
            "model", "curves.png", "summary.json"} <= names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_done"] == 2 and summary["world_size"] == 1 and summary["samples_per_s_median"] > 0


def test_checkpointing_and_tensorboard_options(tmp_path):
    "Gradient checkpointing recomputes the same step; TensorBoard gets the logged scalars."
    plain = T.train(config(tmp_path, "plain", steps=1))
    ckpt = T.train(config(tmp_path, "ckpt", steps=1, grad_checkpointing=True, tensorboard=True))
    for (name, a), b in zip(plain.state_dict().items(), ckpt.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    events = list((tmp_path / "ckpt" / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(events[0].parent)).Reload()
    assert {"loss", "lr", "curv", "samples_per_s"} <= set(acc.Tags()["scalars"])


@pytest.mark.skipif(not os.environ.get("MERU_NB_SLOW"), reason="compiles with inductor (1-2 min on 2 cores); MERU_NB_SLOW=1 runs it")
def test_compiled_run_equals_eager(tmp_path):
    "`compile=True` (torch.compile, inductor) trains to the same losses as eager."
    for name, compiled in (("eager", False), ("compiled", True)):
        T.train(config(tmp_path, name, compile=compiled))
    eager, compiled = read_log(tmp_path / "eager"), read_log(tmp_path / "compiled")
    assert [round(r["loss"], 4) for r in compiled] == [round(r["loss"], 4) for r in eager]


def table_worker(rank: int, folder: str, data: str):
    tdist.init_process_group("gloo", init_method=f"file://{folder}/store-table", rank=rank, world_size=WORLD)
    try:
        T.train(config(folder, "table-two", data=data, steps=3))
    finally:
        tdist.destroy_process_group()


def test_skips_are_totalled_across_ranks(tmp_path, spawn_ranks):
    "Two processes on a table with corrupt images: log.jsonl and summary.json count every rank's skips, as one process does."
    from test_train import dirty_table, expected_skips
    data = str(dirty_table(tmp_path / "data"))
    spawn_ranks(table_worker, str(tmp_path), data, world=WORLD)
    single = config(tmp_path, "table-one", data=data, steps=3)
    T.train(single)
    logs = [read_log(tmp_path / name) for name in ("table-one", "table-two")]
    assert [r["skipped"] for r in logs[0]] == [r["skipped"] for r in logs[1]]
    want = expected_skips(single, data)
    summaries = [json.loads((tmp_path / name / "summary.json").read_text())["skipped"] for name in ("table-one", "table-two")]
    assert want > 0 and all(s["by_reason"] == {"corrupt image": want, "missing file": 1} for s in summaries)
    assert len(summaries[1]["examples"]["corrupt image"]) >= 1
