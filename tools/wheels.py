"""The wheel folder for a GPU machine that reaches no package index (`make wheels`).

Such a machine has torch and a few libraries installed already (PREINSTALLED); this folder holds the
rest of meru_nb's runtime dependencies, at the versions installed in this project's venv (the versions
the tests ran with), downloaded by pip for the machine's Python and platform, and meru_nb's own wheel
built from this checkout. `tools/gpu_check.sh` installs it there with `pip install --no-index --no-deps`
into a folder of its own, so the machine's torch is never touched.

    python tools/wheels.py --out wheels                        # for the lent GPU machine: Python 3.12, manylinux
    python tools/wheels.py --out W --python-version 3.11       # for this machine's Python (the tests)
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
# What the lent GPU machine has installed (torchvision comes with timm, which needs it).
PREINSTALLED = ("torch", "torchvision", "timm", "safetensors", "numpy", "scipy", "scikit-learn", "matplotlib",
                "pyyaml", "tqdm")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
MAX_BYTES = 64 * 2**20          # what the device tool carries with a command


def canonical(name: str) -> str:
    "A distribution name as pip compares them: lower case, runs of '-', '_', '.' as one '-'."
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names) -> dict:
    "{distribution: installed version} of `names` and everything they require (no extras), as installed here."
    found, todo = {}, [canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            found[name] = None                      # required but not installed here (a platform marker)
            continue
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonical(req.name))
    return found


def missing(preinstalled=PREINSTALLED) -> dict:
    "meru_nb's runtime dependencies that a machine with `preinstalled` lacks: {distribution: version}."
    have = closure(preinstalled)
    need = closure(["meru_nb"])
    return {n: v for n, v in sorted(need.items()) if n not in have and n != "meru-nb" and v is not None}


def build(out: Path, python_version: str, preinstalled=PREINSTALLED) -> dict:
    "Download the missing wheels for `python_version` and build meru_nb's into `out`; returns the manifest."
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    pins = missing(preinstalled)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--only-binary=:all:", "--python-version", python_version, *platforms, "--dest", str(out),
                    *[f"{n}=={v}" for n, v in pins.items()]], check=True)
    with tempfile.TemporaryDirectory() as tmp:   # a clean copy: setuptools' build/ keeps modules deleted since
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy2(ROOT / name, tmp)
        shutil.copytree(ROOT / "meru_nb", Path(tmp) / "meru_nb", ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--no-build-isolation", "--wheel-dir", str(out.resolve()), tmp], check=True)
    wheels = sorted(out.glob("*.whl"))
    manifest = {"python_version": python_version, "platforms": list(PLATFORMS), "preinstalled": list(preinstalled),
                "pins": pins, "wheels": {w.name: w.stat().st_size for w in wheels},
                "bytes": sum(w.stat().st_size for w in wheels)}
    (out / "wheels.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if manifest["bytes"] > MAX_BYTES:
        raise SystemExit(f"wheels: {out} holds {manifest['bytes'] / 2**20:.1f} MiB, over the {MAX_BYTES // 2**20} MiB "
                         f"a device command carries")
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "wheels", help="the folder to fill (its old wheels are removed)")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python, major.minor")
    args = p.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        raise SystemExit(f"wheels: --python-version must look like 3.12, got {args.python_version!r}")
    m = build(args.out, args.python_version)
    print(f"wheels: {len(m['wheels'])} wheels, {m['bytes'] / 2**20:.1f} MiB, Python {m['python_version']}, in {args.out}: "
          + ", ".join(m["wheels"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
