"""The walk of one call through the package: which modules it visits, and how often it crosses between them.

A reviewer reads a call such as `evaluate_run(run_dir)` by following it from function to function.
This tool does that walk by executing the call under a profiler hook and keeping the calls from one
function of `meru_nb` to another (calls through torch or the standard library are attributed to the
nearest `meru_nb` caller). It counts:

- modules visited: the modules of `meru_nb` whose functions the call runs;
- crossings: distinct edges from a function of one module to a function of another, each counted
  once, as a reader meets it once; each is a step down into another module and, when that
  function returns, a climb back up out of it;
- entries per module: distinct edges into the module from another one;
- calls per module: how many times the run actually entered the module from another one (work
  done twice shows here: the same edge taken again).

Usage: python tools/walk.py evaluate RUN_DIR [--json FILE]
       (evaluates the run folder RUN_DIR with `evaluate_run`, which writes results.json and the
       figures there, as `meru-nb evaluate` does)
       python tools/walk.py train [--steps N] [--json FILE]
       (trains make run's MERU recipe, the preset cpu_meru, shortened to N steps in a temporary
       folder: every part of the loop runs, the towers' first steps alone, checkpoints and the
       saved model included)
"""
import argparse
import json
import sys
from collections import Counter
from pathlib import Path

PACKAGE = "meru_nb"


def _module(frame) -> str | None:
    "The `meru_nb` module a frame runs in, or None."
    name = frame.f_globals.get("__name__", "")
    return name if name == PACKAGE or name.startswith(PACKAGE + ".") else None


def walk(call, *args, **kwargs) -> dict:
    "Run `call(*args, **kwargs)` and return its walk: the modules, crossings and entries defined above, and its result."
    edges, stack, calls = set(), [], Counter()

    def hook(frame, event, arg):
        if event == "call":
            module = _module(frame)
            caller = next((f for f in reversed(stack) if f is not None), None)
            here = (module, frame.f_code.co_qualname) if module else None
            if here and caller and caller != here:
                edges.add((caller, here))
                if caller[0] != module:
                    calls[module] += 1
            stack.append(here)
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(hook)
    try:
        result = call(*args, **kwargs)
    finally:
        sys.setprofile(None)
    crossings = sorted((a, b) for a, b in edges if a[0] != b[0])
    modules = sorted({m for edge in edges for m, _ in edge})
    entries = Counter(b[0] for _, b in crossings)
    return {"modules": modules, "n_modules": len(modules), "crossings": len(crossings),
            "entries": dict(entries.most_common()), "calls": dict(calls.most_common()), "edges": [[f"{a[0]}.{a[1]}", f"{b[0]}.{b[1]}"] for a, b in crossings],
            "result": result}


def train_config(out_dir, steps: int = 4):
    "make run's MERU recipe (preset `cpu_meru`) shortened to `steps` steps of 16 pairs: 2 steps of each tower alone first, a checkpoint every 2 steps."
    from meru_nb.config import PRESETS, TrainConfig
    return TrainConfig(**{**PRESETS["cpu_meru"], "out_dir": str(out_dir), "steps": steps, "batch_size": 16, "n_samples": 256,
                          "warmup_steps": 1, "pretrain_text": 2, "pretrain_image": 2, "ckpt_every": 2, "progress": False})


def report(name: str, w: dict) -> str:
    "The walk `w` of the call `name` in three lines: its size, then the entries and the calls per module."
    lines = [f"{name}: {w['n_modules']} modules visited, {w['crossings']} crossings between them "
             f"(each a climb back up when it returns)"]
    return "\n".join(lines + [f"{key}: " + ", ".join(f"{m.removeprefix(PACKAGE + '.')} {n}" for m, n in w[key].items())
                              for key in ("entries", "calls")])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True, metavar="{evaluate,train}")
    ev = sub.add_parser("evaluate", help="the call to walk: meru_nb.evaluate.evaluate_run(RUN_DIR)")
    ev.add_argument("run_dir", help="a run folder (written by meru-nb train or make run)")
    tr = sub.add_parser("train", help="the call to walk: meru_nb.train.train of make run's MERU recipe, shortened")
    tr.add_argument("--steps", type=int, default=4, help="optimizer steps (at least 2; default 4)")
    for s in (ev, tr):
        s.add_argument("--json", help="also write the walk, with every crossing, to this file")
    a = p.parse_args(argv)
    if a.what == "evaluate":
        from meru_nb.evaluate import evaluate_run
        if not Path(a.run_dir).is_dir():
            ev.error(f"run folder {a.run_dir!r} does not exist")
        w, name = walk(evaluate_run, a.run_dir, figures=True, progress=False), "evaluate_run"
    else:
        import tempfile
        from meru_nb.train import train
        if a.steps < 2:
            tr.error(f"--steps must be at least 2, got {a.steps}")
        with tempfile.TemporaryDirectory() as out_dir:
            w, name = walk(train, train_config(out_dir, a.steps)), "train"
    w.pop("result")
    print(report(name, w))
    if a.json:
        Path(a.json).write_text(json.dumps(w, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
