"""`meru-nb gpu-check` (chapter 14) end to end on the CPU, the way it runs on the lent GPU machine: the wheel
folder of `make wheels` installed by tools/gpu_check.sh into a fresh venv that holds only that machine's
packages, then every part of the tiny setting. `make pytest` builds the folder for this Python
(`make wheels-here`) and names it in MERU_NB_WHEELS."""
import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("wheels_tool", ROOT / "tools" / "wheels.py")
wheels_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheels_tool)


def lent_machine(tmp: Path) -> Path:
    "A fresh venv (with its own pip) that sees only the lent GPU machine's packages, linked from this venv: its python."
    shelf = tmp / "lent-packages"
    shelf.mkdir()
    for name, version in wheels_tool.closure(wheels_tool.PREINSTALLED).items():
        if version is None:
            continue
        dist = distribution(name)
        for top in {Path(f).parts[0] for f in dist.files or [] if Path(f).parts[0] not in ("..", "__pycache__")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (shelf / top).exists():
                (shelf / top).symlink_to(source)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(tmp / "venv")], check=True, capture_output=True)
    site = next((tmp / "venv" / "lib").glob("python3*/site-packages"))
    (site / "lent-packages.pth").write_text(f"{shelf}\n")
    return tmp / "venv" / "bin" / "python"


def clean_env(python: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PYTHON": str(python), "PATH": f"{python.parent}:{env.get('PATH', '')}", "OMP_NUM_THREADS": "1"}


def test_the_folder_holds_what_the_lent_machine_lacks():
    "What `make wheels` downloads: meru_nb's dependencies outside the machine's packages, never torch or numpy."
    missing = wheels_tool.missing()
    assert {"open-clip-torch", "webdataset", "braceexpand", "wordsegment"} <= set(missing)
    assert not {"torch", "torchvision", "numpy", "timm", "scipy", "meru-nb"} & set(missing)
    assert all(v for v in missing.values())                           # pinned to what the tests run with


@pytest.mark.skipif(not os.environ.get("MERU_NB_WHEELS"), reason="needs the wheel folder: make pytest builds it (make wheels-here)")
def test_gpu_check_from_the_wheel_folder_in_a_fresh_venv(tmp_path):
    "tools/gpu_check.sh on a machine like the lent one: installs the wheels, runs every part, writes the JSON."
    folder = Path(os.environ["MERU_NB_WHEELS"])
    assert json.loads((folder / "wheels.json").read_text())["python_version"] == "%d.%d" % sys.version_info[:2]
    python = lent_machine(tmp_path)
    probe = "import importlib.util as u, torch, timm; print([u.find_spec(m) is None for m in ('open_clip', 'webdataset', 'meru_nb')])"
    seen = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=clean_env(python), cwd=tmp_path)
    assert seen.stdout.strip() == "[True, True, True]", seen.stderr   # the fresh venv lacks them until the wheels come
    out = tmp_path / "out" / "gpu_check.json"
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), "--wheels", str(folder), "--out", str(out),
                           "--", "--device", "cpu", "--tiny"], capture_output=True, text=True, env=clean_env(python),
                          cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    env = result["environment"]
    assert env["meru_nb_file"].startswith(str(tmp_path / "out" / "gpu_check_site"))     # the wheel's meru_nb ran
    assert env["open_clip_torch"] and env["webdataset"] and env["device"] == "cpu"
    assert {name: p["status"] for name, p in result["parts"].items()} == {p: "ok" for p in ("bench", "train", "ddp", "compare")}
    bench = result["parts"]["bench"]["result"]["entries"]
    assert [e["size"] for e in bench] == ["tiny"] and set(bench[0]["kinds"]) == {"meru", "clip", "open_clip"}
    assert all(v["median_s"] > 0 for v in bench[0]["kinds"].values()) and "meru/open_clip" in bench[0]["ratios"]
    train = result["parts"]["train"]["result"]
    assert train["steps"] == 8 and train["finite"] is True and train["samples_per_s_median"] > 0
    ddp = result["parts"]["ddp"]["result"]
    assert ddp["backend"] == "gloo" and ddp["equal"] is True and ddp["parameters_compared"] > 10
    compare = result["parts"]["compare"]["result"]
    assert set(compare["arms"]) == {"MERU", "CLIP", "MERU, λ = 0.2 from step 0"}
    assert all(0 <= a["metrics"]["zero_shot_shape"] <= 1 for a in compare["arms"].values())
    assert compare["arms"]["MERU, λ = 0.2 from step 0"]["config"]["entail_warmup"] == 0
    assert compare["arms"]["MERU"]["config"]["entail_warmup"] > 0 and len(compare["goals"]) == 10
    assert isinstance(compare["paper_lambda_trains"], bool)
    for name in ("bench", "train", "ddp", "compare"):
        assert f"\n{name} " in done.stdout                           # the summary table, one row per part


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line(tmp_path):
    "The other bad options are rows of test_cli_errors.py; this one depends on the machine."
    done = subprocess.run([sys.executable, "-m", "meru_nb.cli", "gpu-check", "--out", str(tmp_path / "g.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--device cuda: this machine has no usable CUDA GPU" in done.stderr and not (tmp_path / "g.json").exists()


def test_the_script_refuses_an_empty_wheel_folder(tmp_path):
    (tmp_path / "wheels").mkdir()
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), "--wheels", str(tmp_path / "wheels"), "--out",
                           str(tmp_path / "g.json")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no wheels in" in done.stderr and not (tmp_path / "g.json").exists()
