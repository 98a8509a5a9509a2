"""Bad input through the real command line: every case a one-line error, exit status 2, no traceback.

Each row of CASES runs `meru-nb ...` in a fresh process (the installed entry point's `main`), two at a
time, and the tests check: exit status 2, exactly one line on stderr that carries the error and names
the bad thing (argparse's own usage lines aside), no traceback, and that the run folders a case
points at are byte for byte as they were. `block` hides modules from the process, as if an optional
extra were not installed. A row marked `xfail` is a known failure still to fix (strict: it must fail).
"""
import concurrent.futures as futures
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from meru_nb.config import TrainConfig
from meru_nb.train import train

SAME_RUN = ["--steps", "2", "--batch-size", "8", "--warmup-steps", "1", "--precision", "fp32", "--n-samples", "32"]  # the workspace's run
DRIVER = ("import os, sys\n"
          "for m in filter(None, os.environ.get('MERU_NB_BLOCK', '').split(',')): sys.modules[m] = None\n"
          "from meru_nb.cli import main\nsys.exit(main())")


def case(argv, expect, block=(), watch=(), xfail=None):
    "A row; the folder named by --out-dir is always watched (a folder that did not exist must still not exist)."
    out_dir = [argv[argv.index("--out-dir") + 1]] if "--out-dir" in argv else []
    return {"argv": argv, "expect": expect, "block": list(block), "watch": sorted(set(watch) | set(out_dir)), "xfail": xfail}


def cases(w: Path) -> dict:
    "The rows: {id: case}, with paths under the prepared folder `w` (see `workspace`)."
    run, model, out = str(w / "run"), str(w / "run" / "model"), str(w / "out")
    texts = ["--texts", json.dumps(["a red star"]), "--out", str(w / "emb.npy")]
    bad_model = lambda name: str(w / "models" / name)
    return {
        # training options and parameter files
        "rerun-into-a-finished-run": case(["train", "--out-dir", run, "--steps", "20"], "holds a run", watch=[run]),
        "overwrite-with-a-bad-seed": case(["train", "--out-dir", run, "--overwrite", "true", "--seed", "-1"],
                                          "`seed` must be a whole number in [0, 2**63)", watch=[run]),
        "seed-too-large": case(["train", "--seed", str(2**70), "--out-dir", out], "`seed` must be a whole number in [0, 2**63)"),
        "leftovers-of-a-run": case(["train", "--out-dir", str(w / "leftovers"), "--steps", "2", "--warmup-steps", "1"],
                                   "holds a run (checkpoint_0000100.pt, curves.png, summary.json, tb)"),
        "users-file-in-tb": case(["train", "--out-dir", str(w / "mixed"), "--overwrite", "true", "--steps", "2",
                                  "--warmup-steps", "1"], "did not write and would replace or delete (tb/notes.txt)"),
        "resume-a-truncated-checkpoint": case(["train", "--out-dir", str(w / "truncated"), *SAME_RUN, "--resume", "true"],
                                              "checkpoint.pt' is not a readable checkpoint", watch=[str(w / "truncated")]),
        "resume-a-pickle-of-code": case(["train", "--out-dir", str(w / "payload"), *SAME_RUN, "--resume", "true"],
                                        "checkpoint.pt' is not a readable checkpoint", watch=[str(w / "payload")]),
        "resume-a-log-damaged-before-its-end": case(["train", "--out-dir", str(w / "tornlog"), *SAME_RUN, "--resume", "true"],
                                                    "tornlog/log.jsonl' is not a log record", watch=[str(w / "tornlog")]),
        "embed-out-is-a-folder": case(["embed", model, "--texts", str(w / "texts.txt"), "--out", str(w / "adir.npy")],
                                      "adir.npy' is a folder"),
        # --out checked before any work: with no model at all, the output is what is named
        "embed-out-is-a-folder-before-the-model": case(["embed", str(w / "nowhere"), "--texts", str(w / "texts.txt"),
                                                        "--out", str(w / "adir.npy")], "adir.npy' is a folder"),
        "embed-out-under-a-file": case(["embed", str(w / "nowhere"), "--texts", str(w / "texts.txt"), "--out",
                                        str(w / "file.txt" / "e.npy")], "file.txt', which is a file", watch=[str(w / "file.txt")]),
        "embed-names-file-is-a-folder": case(["embed", str(w / "nowhere"), "--texts", str(w / "texts.txt"), "--out",
                                              str(w / "taken.npy")], "taken_names.json' is a folder", watch=[str(w / "taken.npy")]),
        "zeroshot-out-is-a-folder": case(["zeroshot", str(w / "nowhere"), "--builtin", "4", "--out", str(w / "adir.npy")],
                                         "--out '" + str(w / "adir.npy") + "' is a folder"),
        "zeroshot-out-under-a-file": case(["zeroshot", str(w / "nowhere"), "--builtin", "4", "--out", str(w / "file.txt" / "r.json")],
                                          "file.txt', which is a file", watch=[str(w / "file.txt")]),
        "into-a-model-folder": case(["train", "--out-dir", model, "--overwrite", "true", "--steps", "2", "--warmup-steps", "1"],
                                    "config.json (not a training run's"),
        "lr-inf": case(["train", "--lr", "inf", "--out-dir", run], "`lr` must be finite", watch=[run]),
        "entail-weight-absurd": case(["train", "--entail-weight", "1e39", "--out-dir", out],
                                     "`entail_weight` must be in [0, 1e6]"),
        "image-size-below-the-scenes": case(["train", "--image-size", "4", "--steps", "1", "--out-dir", out],
                                            "`image_size` must be at least 8 for data='builtin'"),
        "lr-text": case(["train", "--lr", "fast", "--out-dir", out], "invalid float value: 'fast'"),
        "steps-fraction": case(["train", "--steps", "5.7", "--out-dir", out], "invalid int value: '5.7'"),
        "resume-maybe": case(["train", "--resume", "maybe", "--out-dir", out], "expected true or false"),
        "warmup-beyond-steps": case(["train", "--steps", "3", "--warmup-steps", "5", "--out-dir", out],
                                    "`warmup_steps` must be in [0, steps=3], got warmup_steps=5"),
        "warmup-in-a-file-beyond-steps": case(["train", "-f", str(w / "warmup.yaml"), "--steps", "3", "--out-dir", out],
                                              "got warmup_steps=50"),
        "yaml-syntax": case(["train", "-f", str(w / "syntax.yaml"), "--out-dir", run], "is not valid YAML", watch=[run]),
        "yaml-number-as-text": case(["train", "-f", str(w / "text.yaml"), "--out-dir", out], "`lr` must be a number, got lr='abc'"),
        "yaml-fraction-steps": case(["train", "-f", str(w / "fraction.yaml"), "--out-dir", out], "`steps` must be a whole number, got steps=5.7"),
        "yaml-list": case(["train", "-f", str(w / "list.yaml"), "--out-dir", out], "must map names to values"),
        "yaml-unknown-key": case(["train", "-f", str(w / "unknown.yaml"), "--out-dir", out], "unknown parameter(s) ['learning_rate']"),
        "yaml-duplicate-key": case(["train", "-f", str(w / "twice.yaml"), "--out-dir", run],
                                   "twice.yaml' sets 'lr' twice (lines 1 and 3)", watch=[run]),
        "yaml-runs-a-shell": case(["train", "-f", str(w / "pipe.yaml"), "--out-dir", out],
                                  "pipe.yaml' sets data='pipe:touch", watch=[str(w / "owned")]),
        "yaml-missing": case(["train", "-f", str(w / "nowhere.yaml")], "does not exist"),
        "preset-unknown": case(["train", "--preset", "meru_vit_xl"], "unknown preset 'meru_vit_xl'"),
        "lock-of-another-process": case(["train", "--out-dir", str(w / "locked"), "--steps", "2", "--warmup-steps", "1"],
                                        "locked by pid 1", watch=[str(w / "locked")]),   # pid 1 lives, and trains nothing
        "out-dir-is-a-file": case(["train", "--out-dir", str(w / "file.txt")], "is a file, not a folder", watch=[str(w / "file.txt")]),
        "device-tpu": case(["train", "--device", "tpu", "--out-dir", run], "`device` must be", watch=[run]),
        "device-cuda-without-gpu": case(["train", "--device", "cuda", "--out-dir", out], "no usable CUDA GPU",
                                        xfail=None if not torch.cuda.is_available() else "this machine has a GPU"),
        "tensorboard-missing": case(["train", "--tensorboard", "true", "--out-dir", run], "needs the tensorboard package",
                                    block=["torch.utils.tensorboard", "tensorboard"], watch=[run]),
        "csv-wrong-columns": case(["train", "--data", str(w / "columns.csv"), "--out-dir", out], "has no column ['filepath', 'title']"),
        "csv-no-readable-image": case(["train", "--data", str(w / "unreadable.csv"), "--out-dir", out], "has a readable image"),
        "csv-latin-1": case(["train", "--data", str(w / "latin.csv"), "--out-dir", out],
                            "latin.csv' is not UTF-8 text: byte 33 (line 2) is 0xe9"),
        "csv-missing": case(["train", "--data", str(w / "nowhere.csv"), "--out-dir", out], "does not exist"),
        "csv-empty": case(["train", "--data", str(w / "empty.csv"), "--out-dir", out], "is empty: expected a header row"),
        "data-a-folder": case(["train", "--data", str(w / "shards"), "--out-dir", out], "is a folder, not a shard"),
        "shard-not-a-tar": case(["train", "--data", str(w / "noise.tar"), "--out-dir", out], "noise.tar is not a tar file"),
        "shards-missing": case(["train", "--data", str(w / "shards" / "{000..002}.tar"), "--out-dir", out], "do not exist"),
        # models on disk
        "safetensors-truncated": case(["embed", bad_model("truncated"), *texts], "is not a readable safetensors file"),
        "safetensors-empty": case(["embed", bad_model("empty"), *texts], "is not a readable safetensors file"),
        "safetensors-random": case(["embed", bad_model("random"), *texts], "is not a readable safetensors file"),
        "config-not-json": case(["embed", bad_model("notjson"), *texts], "is not valid JSON"),
        "config-a-list": case(["embed", bad_model("list"), *texts], "must hold a JSON object"),
        "config-without-kind": case(["embed", bad_model("nokind"), *texts], "`kind` must be one of"),
        "config-unknown-key": case(["embed", bad_model("unknownkey"), *texts], "does not describe a model"),
        "config-text-for-number": case(["embed", bad_model("textnumber"), *texts], "does not describe a model"),
        "pth-random": case(["embed", str(w / "random.pth"), *texts], "is not a reference checkpoint"),
        "model-missing": case(["embed", str(w / "nowhere"), *texts], "does not exist"),
        # evaluation
        "evaluate-missing": case(["evaluate", str(w / "nowhere")], "does not exist"),
        "evaluate-a-file": case(["evaluate", str(w / "file.txt")], "is a file, not a run folder"),
        "evaluate-results-is-a-folder": case(["evaluate", str(w / "resdir")], "resdir/results.json' is a folder",
                                             watch=[str(w / "resdir")]),
        "evaluate-figures-is-a-file": case(["evaluate", str(w / "figfile")], "figfile/figures' is a file",
                                           watch=[str(w / "figfile")]),
        "evaluate-n-zero-shot-0": case(["evaluate", run, "--n-zero-shot", "0"], "(--n-zero-shot) must be", watch=[run]),
        "evaluate-n-retrieval-negative": case(["evaluate", run, "--n-retrieval", "-5"], "(--n-retrieval) must be", watch=[run]),
        "zeroshot-non-image-file": case(["zeroshot", model, "--folder", str(w / "folder")], "bad.png' is not a readable image"),
        "embed-non-image-file": case(["embed", model, "--images", str(w / "folder"), "--out", str(w / "e.npy")],
                                     "bad.png' is not a readable image"),
        "zeroshot-classnames-with-builtin": case(["zeroshot", model, "--builtin", "4", "--classnames", '["a b", "c d"]'],
                                                 "--classnames and --templates apply to --folder"),
        "zeroshot-classnames-bad-json": case(["zeroshot", model, "--folder", str(w / "folder"), "--classnames", '["a", "b"'],
                                             "--classnames: '[\"a\", \"b\"' is not valid JSON"),
        "zeroshot-classnames-file-bad-json": case(["zeroshot", model, "--folder", str(w / "folder"), "--classnames",
                                                   str(w / "classes.json")], "classes.json' is not valid JSON"),
        "zeroshot-templates-file-bad-json": case(["zeroshot", model, "--folder", str(w / "folder"), "--templates",
                                                  str(w / "broken.json")], "--templates: '" + str(w / "broken.json") + "' is not valid JSON"),
        "zeroshot-classnames-empty-name": case(["zeroshot", model, "--folder", str(w / "folder"), "--classnames", '["", "b"]'],
                                               "--classnames: '' is not a class name"),
        "zeroshot-classnames-twice": case(["zeroshot", model, "--folder", str(w / "folder"), "--classnames", "x,x"],
                                          "--classnames: 'x' is given twice"),
        "zeroshot-classnames-not-text": case(["zeroshot", model, "--folder", str(w / "folder"), "--classnames", '{"a": 5, "b": "y"}'],
                                             "--classnames: 5 is not a class name"),
        "zeroshot-classnames-no-file": case(["zeroshot", model, "--folder", str(w / "folder"), "--classnames",
                                             str(w / "nowhere.json")], "nowhere.json' does not exist"),
        "zeroshot-classnames-empty": case(["zeroshot", model, "--folder", str(w / "folder"), "--classnames", ""],
                                          "--classnames is empty"),
        "zeroshot-templates-bad-json": case(["zeroshot", model, "--folder", str(w / "folder"), "--templates", '["a {}", "b {}"'],
                                            "--templates: '[\"a {}\", \"b {}\"' is not valid JSON"),
        "zeroshot-template-without-slot": case(["zeroshot", model, "--folder", str(w / "folder"), "--templates",
                                                '["a photo, in colour"]'], "got ['a photo, in colour']"),
        "embed-texts-json-malformed": case(["embed", model, "--texts", str(w / "broken.json"), "--out", str(w / "emb.npy")],
                                           "broken.json' is not valid JSON", watch=[str(w / "emb.npy")]),
        "embed-texts-inline-not-strings": case(["embed", model, "--texts", "[1, 2]", "--out", str(w / "emb.npy")],
                                               "--texts '[1, 2]' must hold a JSON list of strings"),
        "embed-texts-a-folder": case(["embed", model, "--texts", str(w / "folder"), "--out", str(w / "emb.npy")],
                                     "folder' is a folder, expected a text file", watch=[str(w / "emb.npy")]),
        "embed-images-a-file": case(["embed", model, "--images", str(w / "texts.txt"), "--out", str(w / "emb.npy")],
                                    "texts.txt' is a file, expected a folder of images", watch=[str(w / "emb.npy")]),
        "zeroshot-folder-a-file": case(["zeroshot", model, "--folder", str(w / "texts.txt")],
                                       "texts.txt' is a file, expected a folder with one subfolder of images per class"),
        "embed-texts-empty": case(["embed", model, "--texts", "", "--out", str(w / "emb.npy")], "--texts is empty"),
        "embed-texts-latin-1": case(["embed", model, "--texts", str(w / "latin.txt"), "--out", str(w / "emb.npy")],
                                    "latin.txt' is not UTF-8 text: byte 16 (line 2)"),
        "config-huge-vocab": case(["embed", bad_model("hugevocab"), *texts], "wrong shapes: textual.token_embedding.weight"),
        "retrieval-csv-wrong-columns": case(["retrieval", model, "--csv", str(w / "columns.csv")], "column"),
        "retrieval-coco-without-caption": case(["retrieval", model, "--coco", str(w / "coco.json"), "--images", str(w / "folder")],
                                               "coco.json' has no key 'caption' in annotations[0]"),
        "retrieval-coco-without-images": case(["retrieval", model, "--coco", str(w / "coco-images.json"), "--images",
                                               str(w / "folder")], "coco-images.json' has no key 'images'"),
        "retrieval-karpathy-without-sentences": case(["retrieval", model, "--karpathy", str(w / "karpathy.json"), "--images",
                                                      str(w / "folder")], "karpathy.json' has no key 'sentences' in images[0]"),
        "retrieval-karpathy-without-raw": case(["retrieval", model, "--karpathy", str(w / "karpathy-raw.json"), "--images",
                                                str(w / "folder")], "karpathy-raw.json' has no key 'raw' in images[0].sentences[0]"),
        "retrieval-csv-latin-1": case(["retrieval", model, "--csv", str(w / "latin.csv")], "latin.csv' is not UTF-8 text: byte 33"),
        # options every command shares, checked as they are parsed
        "embed-batch-size-negative": case(["embed", model, *texts, "--batch-size", "-1"],
                                          "argument --batch-size: must be a whole number >= 1, got '-1'", watch=[str(w / "emb.npy")]),
        "embed-batch-size-0": case(["embed", model, *texts, "--batch-size", "0"], "argument --batch-size: must be a whole number >= 1"),
        "zeroshot-batch-size-0": case(["zeroshot", model, "--builtin", "4", "--batch-size", "0"], "argument --batch-size: must be"),
        "retrieval-batch-size-0": case(["retrieval", model, "--builtin", "4", "--batch-size", "0"], "argument --batch-size: must be"),
        "embed-device-meta": case(["embed", model, *texts, "--device", "meta"], "argument --device: `device` must be"),
        "zeroshot-device-cuda-abc": case(["zeroshot", model, "--builtin", "4", "--device", "cuda:abc"], "got device='cuda:abc'"),
        "retrieval-device-mps": case(["retrieval", model, "--builtin", "4", "--device", "mps"], "'mps' but MPS is not available",
                                     xfail=None if not torch.backends.mps.is_available() else "this machine has MPS"),
        "embed-device-cuda-without-gpu": case(["embed", model, *texts, "--device", "cuda"], "no usable CUDA GPU",
                                              xfail=None if not torch.cuda.is_available() else "this machine has a GPU"),
        "zeroshot-builtin-0": case(["zeroshot", model, "--builtin", "0"], "argument --builtin: must be a whole number >= 1, got '0'"),
        "retrieval-builtin-0": case(["retrieval", model, "--builtin", "0"], "argument --builtin: must be a whole number >= 1, got '0'"),
        "evaluate-seed-too-large": case(["evaluate", run, "--seed", str(2**70)], "argument --seed: must be a whole number in [0, 2**31)",
                                        watch=[run]),
        "bench-step-batch-0": case(["bench", "step", "--batch", "0", "--out", str(w / "b.json")],
                                   "argument --batch: must be a whole number >= 1, got '0'", watch=[str(w / "b.json")]),
        "bench-step-threads-negative": case(["bench", "step", "--threads", "-3", "--out", str(w / "b.json")],
                                            "argument --threads: must be a whole number >= 1, got '-3'"),
        "bench-geometry-threads-negative": case(["bench", "geometry", "--threads", "-3", "--out", str(w / "b.json")],
                                                "argument --threads: must be a whole number >= 1, got '-3'"),
        # benchmarks
        "bench-sizes-negative": case(["bench", "geometry", "--sizes", "-3", "--out", str(w / "b.json")], "--sizes must be positive"),
        "bench-without-geoopt": case(["bench", "geometry", "--sizes", "4", "--out", str(w / "b.json")], "meru_nb[bench]",
                                     block=["geoopt"]),
        # the GPU check (chapter 14); without a GPU, --device cuda is test_gpucheck.py's
        "study-unknown": case(["study", "lamda"], "unknown study 'lamda'"),
        "study-bad-option": case(["study", "steps", "--steps", "many"], "invalid int value: 'many'"),
        "gpu-check-cpu-without-tiny": case(["gpu-check", "--device", "cpu", "--out", str(w / "g.json")], "--device cpu needs --tiny"),
        "gpu-check-unknown-device": case(["gpu-check", "--device", "tpu", "--tiny", "--out", str(w / "g.json")],
                                         "--device must be cuda, cuda:N or cpu, got 'tpu'"),
        "gpu-check-unknown-part": case(["gpu-check", "--device", "cpu", "--tiny", "--parts", "bench,fly", "--out", str(w / "g.json")],
                                       "--parts must name some of"),
        "gpu-check-short-budget": case(["gpu-check", "--device", "cpu", "--tiny", "--budget", "5", "--out", str(w / "g.json")],
                                       "--budget must be between 30 and 86400 seconds, got 5"),
    }


def digest(path: str) -> dict:
    "Every file under `path` (or `path` itself) with the sha256 of its bytes."
    p = Path(path)
    if not p.exists():
        return {"absent": True}
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    return {str(q): hashlib.sha256(q.read_bytes()).hexdigest() for q in files}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    "A finished tiny run, broken copies of its model, bad parameter files, tables and image folders."
    w = tmp_path_factory.mktemp("cli")
    train(TrainConfig(out_dir=str(w / "run"), steps=2, batch_size=8, warmup_steps=1, ckpt_every=0, progress=False,
                      device="cpu", precision="fp32", n_samples=32))
    model = w / "run" / "model"
    weights = (model / "model.safetensors").read_bytes()
    config = json.loads((model / "config.json").read_text())
    broken = {"truncated": (weights[: len(weights) // 3], None), "empty": (b"", None),
              "random": (os.urandom(4096), None), "notjson": (weights, "{kind: meru"),
              "list": (weights, "[1, 2]"), "nokind": (weights, json.dumps({k: v for k, v in config.items() if k != "kind"})),
              "unknownkey": (weights, json.dumps({**config, "towers": {**config["towers"], "wings": 2}})),
              "textnumber": (weights, json.dumps({**config, "towers": {**config["towers"], "image_width": "wide"}})),
              "hugevocab": (weights, json.dumps({**config, "towers": {**config["towers"], "vocab_size": 2_000_000}}))}
    for name, (blob, cfg_text) in broken.items():
        (w / "models" / name).mkdir(parents=True)
        (w / "models" / name / "model.safetensors").write_bytes(blob)
        (w / "models" / name / "config.json").write_text(cfg_text if cfg_text is not None else json.dumps(config))
    (w / "random.pth").write_bytes(os.urandom(2048))
    for name in ("truncated", "payload"):                # the run, its checkpoint cut short or replaced by a pickle of code
        shutil.copytree(w / "run", w / name)
    blob = (w / "run" / "checkpoint.pt").read_bytes()
    (w / "truncated" / "checkpoint.pt").write_bytes(blob[: len(blob) // 2])
    import pickle
    (w / "payload" / "checkpoint.pt").write_bytes(pickle.dumps(os.system))
    shutil.copytree(w / "run", w / "tornlog")            # the run, the first line of its log cut short
    first, *rest = (w / "run" / "log.jsonl").read_text().splitlines(keepends=True)
    (w / "tornlog" / "log.jsonl").write_text(first[:25] + "\n" + "".join(rest))
    for folder in ("leftovers", "mixed"):                # what a run leaves; in `mixed`, a file of the user's in tb/ too
        (w / folder / "tb").mkdir(parents=True)
        for name, source in (("summary.json", "summary.json"), ("curves.png", "curves.png"),
                             ("checkpoint_0000100.pt", "checkpoint.pt")):
            shutil.copyfile(w / "run" / source, w / folder / name)
        (w / folder / "tb" / "events.out.tfevents.1.host").write_bytes(b"\x00" * 16)
    (w / "mixed" / "tb" / "notes.txt").write_text("my notes\n")
    (w / "file.txt").write_text("not a folder\n")
    for name, text in {"syntax.yaml": "lr: [1, 2\n", "text.yaml": "lr: abc\n", "fraction.yaml": "steps: 5.7\n",
                       "list.yaml": "- 1\n- 2\n", "unknown.yaml": "learning_rate: 1\n",
                       "twice.yaml": "lr: 3e-4\nsteps: 2\nlr: 1e-2\n",
                       "warmup.yaml": "warmup_steps: 50\n",
                       "pipe.yaml": f"data: 'pipe:touch {w / 'owned'}; cat {w / 'run' / 'nothing.tar'}'\n"}.items():
        (w / name).write_text(text)
    for name, content in {"coco.json": {"images": [{"id": 1, "file_name": "a/good.png"}], "annotations": [{"image_id": 1}]},
                          "coco-images.json": {"annotations": [{"image_id": 1, "caption": "a red star"}]},
                          "karpathy.json": {"images": [{"filename": "a/good.png", "split": "test"}]},
                          "karpathy-raw.json": {"images": [{"filename": "a/good.png", "split": "test",
                                                            "sentences": [{"tokens": ["a", "red", "star"]}]}]}}.items():
        (w / name).write_text(json.dumps(content))       # annotation files, each without one key of its format
    (w / "empty.csv").write_text("")
    (w / "columns.csv").write_text("path,caption\na.jpg,a red star\n")
    (w / "latin.csv").write_bytes("filepath,title\nnotimage.jpg,a café\n".encode("latin-1"))   # not UTF-8
    (w / "latin.txt").write_bytes("a red star\na café\n".encode("latin-1"))
    (w / "notimage.jpg").write_text("this is text, not a JPEG\n")
    (w / "unreadable.csv").write_text("filepath,title\nnotimage.jpg,a red star\n")
    (w / "shards").mkdir()
    (w / "noise.tar").write_bytes(bytes(range(256)) * 16)  # not a tar file, whatever its name
    (w / "adir.npy").mkdir()                             # a folder where an output file should go
    (w / "resdir" / "results.json").mkdir(parents=True)  # run folders (without a model: checked first) where evaluate writes
    (w / "figfile").mkdir(); (w / "figfile" / "figures").write_text("my figures\n")
    (w / "locked").mkdir(); (w / "locked" / ".lock").write_text(f"{platform.node()} 1\n")   # a stale lock, its pid reused
    (w / "taken_names.json").mkdir()                     # a folder where the names beside taken.npy should go
    (w / "texts.txt").write_text("a red star\na blue circle\n")
    (w / "broken.json").write_text('["a red star", "a blue circle"')
    (w / "classes.json").write_text('["a", "b"')
    from PIL import Image
    for label in ("a", "b"):
        (w / "folder" / label).mkdir(parents=True)
        Image.new("RGB", (16, 16), (200, 30, 30)).save(w / "folder" / label / "good.png")
    (w / "folder" / "a" / "bad.png").write_text("not a PNG\n")
    return w


@pytest.fixture(scope="module")
def outcomes(workspace, request):
    "Every selected case (all, or those `-k` picks) run once, two processes at a time: {id: (returncode, stdout, stderr, digests before, after)}."
    chosen = {item.callspec.params["name"] for item in request.session.items
              if getattr(item, "callspec", None) and "name" in item.callspec.params}
    table = {name: c for name, c in cases(workspace).items() if name in chosen}

    def run(item):
        name, c = item
        before = {p: digest(p) for p in c["watch"]}
        env = {**os.environ, "MERU_NB_BLOCK": ",".join(c["block"]), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        p = subprocess.run([sys.executable, "-c", DRIVER, *c["argv"]], capture_output=True, text=True, env=env,
                           timeout=300, cwd=workspace)
        return name, (p.returncode, p.stdout, p.stderr, before, {q: digest(q) for q in c["watch"]})

    with futures.ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, table.items()))


def error_lines(stderr: str) -> list:
    "stderr without argparse's usage block (the `usage:` line and its indented continuation lines)."
    lines, out, in_usage = stderr.strip().splitlines(), [], False
    for line in lines:
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        out.append(line)
    return out


CASE_IDS = list(cases(Path("/w")))


@pytest.mark.parametrize("name", CASE_IDS)
def test_bad_input_is_one_line_and_exit_2(name, outcomes, workspace, request):
    c = cases(workspace)[name]
    if c["xfail"]:
        request.applymarker(pytest.mark.xfail(reason=c["xfail"], strict=True))
    code, out, err, before, after = outcomes[name]
    assert "Traceback" not in err, err[-2000:]
    lines = error_lines(err)
    assert code == 2, (code, err[-1000:])
    assert len(lines) == 1 and "error" in lines[0], lines
    assert c["expect"] in lines[0], lines[0]
    assert before == after, f"{c['watch']} changed"


def test_the_suite_covers_every_command():
    "At least one bad-input row for each command of meru-nb."
    from meru_nb.cli import COMMANDS
    used = {c["argv"][0] for c in cases(Path("/w")).values()}
    assert set(COMMANDS) <= used, set(COMMANDS) - used
