"""The installed package: `pip install .` ships every module and needs only its runtime dependencies."""
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = {"torch", "torchvision", "numpy", "matplotlib", "pillow", "tqdm", "safetensors", "timm",
           "open_clip_torch", "webdataset", "braceexpand", "wordsegment",
           "scikit-learn", "scipy", "pyyaml"}
DEV_ONLY = ["geoopt", "hypothesis", "nbdev", "papermill", "pytest", "ipywidgets", "jupyter_book", "IPython"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    "Build the project's wheel the way `pip install .` does (no network: the venv's setuptools)."
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT)], check=True)
    (path,) = out.glob("meru_nb-*.whl")
    return path


def test_wheel_ships_every_module(wheel):
    "Every exported module in meru_nb/ is in the wheel; the notebooks and tests are not."
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"meru_nb/{p.name}" for p in (ROOT / "meru_nb").glob("*.py")}
    assert modules and modules <= names
    assert not any(n.startswith(("nbs/", "tests/", "tools/")) for n in names)


def test_wheel_requires_only_runtime_dependencies(wheel):
    "Requires-Dist without an extra marker is exactly the runtime set; the dev tools sit behind extras."
    meta = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(zipfile.ZipFile(wheel).read(meta).decode())
    requires = msg.get_all("Requires-Dist") or []
    plain = {r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for r in requires if "extra ==" not in r}
    assert plain == RUNTIME
    assert {"dev", "widgets"} <= set(msg.get_all("Provides-Extra"))


def test_imports_without_dev_dependencies(tmp_path):
    "Every module imports and computes with the dev-only packages made unimportable."
    blocker = tmp_path / "sitecustomize.py"
    # A None entry in sys.modules makes `import x` fail and find_spec(x) return None, as if x were absent.
    blocker.write_text(f"import sys\nfor name in {DEV_ONLY!r}: sys.modules[name] = None\n")
    code = ("import importlib, pkgutil, torch, meru_nb\n"
            "for name in ('geoopt', 'hypothesis'):\n"
            "    try: importlib.import_module(name)\n"
            "    except ImportError: pass\n"
            "    else: raise SystemExit(name + ' should be blocked')\n"
            "mods = [m.name for m in pkgutil.iter_modules(meru_nb.__path__) if not m.name.startswith('_')]\n"
            "for m in mods: importlib.import_module(f'meru_nb.{m}')\n"
            "from meru_nb.expmap import exp_map0\n"
            "from meru_nb.lorentz import pairwise_dist\n"
            "from meru_nb.entailment import entailment_loss\n"
            "x, y = exp_map0(torch.randn(4, 8)), exp_map0(torch.randn(4, 8))\n"
            "assert pairwise_dist(x, y).shape == (4, 4) and entailment_loss(x, y).isfinite()\n"
            "print(sorted(mods))\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "lorentz" in res.stdout


def test_top_level_load_is_lazy():
    "`meru_nb.load` is the command line's loader, and `import meru_nb` alone does not import timm or open_clip."
    code = ("import sys, meru_nb\n"
            "assert 'timm' not in sys.modules and 'open_clip' not in sys.modules, 'eager import'\n"
            "from meru_nb import embed, models\n"
            "assert meru_nb.load is embed.load_model and meru_nb.save is models.save\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_load_takes_a_run_or_model_folder_and_gives_an_evaluation_mode_model(tmp_path):
    "An image's embedding from `meru_nb.load` does not depend on the other images of its batch (BatchNorm in the cpu stem)."
    import meru_nb, torch
    from meru_nb.config import TrainConfig
    from meru_nb.train import train
    train(TrainConfig(out_dir=str(tmp_path / "run"), size="cpu", image_size=64, steps=2, batch_size=8, warmup_steps=1,
                      ckpt_every=0, progress=False, n_samples=32))
    for path in (tmp_path / "run", tmp_path / "run" / "model"):
        model = meru_nb.load(path)
        assert not model.training and not any(m.training for m in model.modules())
        images = torch.rand(6, 3, 64, 64)
        with torch.no_grad():
            alone, together = model.encode_image(images[:1]), model.encode_image(images)[:1]
        torch.testing.assert_close(alone, together, rtol=1e-4, atol=1e-5)


def test_encode_image_and_text_take_what_users_pass():
    "Bytes, NHWC arrays, PIL images and strings give the embeddings of the float batch and the tokens they stand for."
    import numpy as np, torch
    from PIL import Image
    from meru_nb.encoders import tokenize
    from meru_nb.models import build_model
    torch.manual_seed(0)
    model = build_model("meru", "tiny").eval()
    pixels = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)        # NHWC bytes, as images are stored
    floats = pixels.permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        want = model.encode_image(floats)
        for given in (pixels.permute(0, 3, 1, 2), pixels.numpy(), [Image.fromarray(p) for p in pixels.numpy()]):
            torch.testing.assert_close(model.encode_image(given), want, rtol=1e-5, atol=1e-6)
        texts = ["a red star", "a small blue circle on the left"]
        torch.testing.assert_close(model.encode_text(texts), model.encode_text(tokenize(texts, 32)))
        torch.testing.assert_close(model.encode_text(texts[0]), model.encode_text(texts)[:1])
