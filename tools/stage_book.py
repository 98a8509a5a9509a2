"""Stage the notebooks for Jupyter Book: nbdev's directives become Jupyter Book tags.

Jupyter Book does not know nbdev's `#|` directive lines, so it would print them and
show cells that nbdev hides. This script copies the book's sources into a staging
folder and rewrites each notebook on the way:

| nbdev directive           | in the book                                   |
| ------------------------- | --------------------------------------------- |
| `hide`, `include: false`  | cell removed (`remove-cell`)                  |
| `echo: false`             | input removed (`remove-input`)                |
| `output: false`           | output removed (`remove-output`)              |
| `eval: false`             | not executed (`skip-execution`)               |
| a cell of directives only | cell dropped (e.g. `default_exp`)             |
| every other directive     | the `#|` line is stripped, the code is shown  |

Only the notebooks named in `_toc.yml` are staged: the papermill run notebooks are not chapters.

The book's notebooks are executed once, in place, between the two steps (by `nbdev-test --save`,
in parallel: the chapter tests and the book's outputs are the same run), then built by Jupyter Book
with execution off.

The chapters are committed with their outputs (nbdev's convention: GitHub and nbviewer show them
too). `keep` writes a `make book`'s outputs into nbs/, chapter by chapter, and records in
nbs/outputs.json the hash of what made them (the code cells, and the files of nbs/results/ they
name); `check` (and the tests) refuse a chapter where either changed since, and `copy` stages such a
chapter without its outputs, never with stale ones.

`make run` only re-executes the results chapter, the one page that depends on its runs: every other
chapter comes with its committed outputs, and so does `make book-fast`'s book, which executes nothing.

Usage: python tools/stage_book.py DEST [copy|transform|all]
       python tools/stage_book.py EXECUTED_BOOK keep      (after make book: its outputs into nbs/)
       python tools/stage_book.py . check                 (nbs/'s outputs were made by its code)
"""
import copy
import datetime
import hashlib
import json
import platform
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = "nbs/outputs.json"      # what made the committed outputs: each chapter's hash of code and results, date, machine
RESULTS = "nbs/22_results.ipynb"  # executed against the reader's own runs by make run; committed without outputs
MAX_CHAPTER_BYTES = 2_000_000     # a chapter with its outputs: figures are PNGs at the book's width, nothing heavier
FIGURE_PX = 1600                  # the widest PNG kept: the book's column (about 800 px) on a screen of double density
DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(?P<body>.*)$")
TAGS = {
    "hide": "remove-cell",
    "include: false": "remove-cell",
    "echo: false": "remove-input",
    "output: false": "remove-output",
    "eval: false": "skip-execution",
}


def split_directives(source: str):
    """Split a code cell's source into its leading `#|` directives and the code after them."""
    lines = source.splitlines()
    directives = []
    while lines and (m := DIRECTIVE.match(lines[0])):
        directives.append(" ".join(m["body"].split()))
        lines.pop(0)
    return directives, "\n".join(lines).strip("\n")


def stage_cell(cell: dict):
    """Return the cell as the book shows it, or None when the book drops it."""
    if cell["cell_type"] != "code":
        return cell
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    directives, code = split_directives(source)
    if not directives:
        return cell
    if not code.strip():
        return None
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    for d in directives:
        tag = TAGS.get(d.lower())
        if tag and tag not in tags:
            tags.append(tag)
    cell["source"] = code
    return cell


def stage_notebook(src: Path, dst: Path):
    nb = json.loads(src.read_text(encoding="utf-8"))
    nb["cells"] = [c for c in map(stage_cell, nb["cells"]) if c is not None]
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def book_config(text: str) -> str:
    "The book's `_config.yml` as staged: with `repository.url` set, the links and launch buttons into it are on."
    import yaml
    config = yaml.safe_load(text)
    url = ((config.get("repository") or {}).get("url") or "").strip()
    if not url:
        return text                                   # no repository named: nothing links to one
    if not re.fullmatch(r"https://[\w.-]+/[\w.-]+/[\w.-]+/?", url):
        raise SystemExit(f"_config.yml: repository.url must look like https://github.com/OWNER/REPO, got {url!r}")
    html = config.setdefault("html", {})
    html.update(use_repository_button=True, use_issues_button=True, use_edit_page_button=True)
    config.setdefault("launch_buttons", {}).update(notebook_interface="classic", colab_url="https://colab.research.google.com",
                                                   binderhub_url="https://mybinder.org")
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def copy_sources(dest: Path):
    "Copy the book's configuration, its extension and the notebooks of the toc (as they are) into `dest`."
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(ROOT / "_toc.yml", dest / "_toc.yml")
    (dest / "_config.yml").write_text(book_config((ROOT / "_config.yml").read_text(encoding="utf-8")), encoding="utf-8")
    (dest / "_ext").mkdir()                       # the book's Sphinx extension and its styles
    shutil.copy2(ROOT / "tools" / "book_ext.py", dest / "_ext" / "book_ext.py")
    shutil.copytree(ROOT / "tools" / "book_static", dest / "_ext" / "book_static")
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "_*.ipynb", "llms.txt")
    shutil.copytree(ROOT / "nbs", dest / "nbs", ignore=ignore)
    in_book = set(re.findall(r"(?:root|file):\s*(\S+)", (ROOT / "_toc.yml").read_text()))
    for nb in sorted((dest / "nbs").rglob("*.ipynb")):
        if nb.relative_to(dest).with_suffix("").as_posix() not in in_book:
            nb.unlink()               # run notebooks (papermill) and drafts are not chapters of the book
    old = stale(ROOT)
    for rel in old:                   # outputs that other code or results made are not shown
        nb = _load(dest / rel)
        _set_outputs(nb, lambda cell: [])
        _save(nb, dest / rel)
    if old:
        print(f"staged without their committed outputs (code or results changed since `make outputs`): {', '.join(old)}")


def transform(dest: Path):
    "Rewrite every staged notebook for Jupyter Book, keeping the outputs it may already hold."
    notebooks = sorted((dest / "nbs").rglob("*.ipynb"))
    for nb in notebooks:
        stage_notebook(nb, nb)
    print(f"staged {len(notebooks)} notebooks in {dest}")


def _code(nb: dict) -> list:
    "The source of each code cell, in order: what made a chapter's outputs (its prose may change)."
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["cells"] if c["cell_type"] == "code"]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _save(nb: dict, path: Path):
    "Write a notebook as nbdev-clean leaves one (indent 1, a final newline, unicode kept)."
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _set_outputs(nb: dict, outputs_of):
    "Give each code cell the outputs `outputs_of(cell)` returns, and no execution count."
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = outputs_of(cell), None


def _has_outputs(nb: dict) -> bool:
    return _shown(nb) > 0


def _shown(nb: dict) -> int:
    "How many code cells show an output."
    return sum(bool(c.get("outputs")) for c in nb["cells"] if c["cell_type"] == "code")


def _inputs(nb: dict, root: Path) -> dict:
    "The files of nbs/results/ that a chapter's code names (a study's JSON): what else its outputs were made from."
    text = "\n".join(_code(nb))
    folder = root / "nbs" / "results"
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.name in text) if folder.is_dir() else []
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def made_hash(nb: dict, root: Path = ROOT) -> str:
    "sha256 of a chapter's code cells (their sources, in order) and of the result files they name: what its outputs were made by."
    made = [_code(nb), _inputs(nb, root)]
    return hashlib.sha256(json.dumps(made, ensure_ascii=False).encode("utf-8")).hexdigest()


def chapters(root: Path = ROOT) -> list:
    "The chapters of the book under `root`, as paths relative to it (nbs/NAME.ipynb), in the toc's order."
    return [f"{name}.ipynb" for name in re.findall(r"(?:root|file):\s*(\S+)", (root / "_toc.yml").read_text())]


def _record(root: Path) -> dict:
    "What made the committed outputs, per chapter: {path: {'hash': made_hash, 'outputs': cells showing one}} (empty if never kept)."
    return _load(root / OUTPUTS)["chapters"] if (root / OUTPUTS).is_file() else {}


def stale(root: Path = ROOT) -> list:
    "Chapters under `root` holding outputs that the record does not vouch for (their code or results changed since, or never kept)."
    record = _record(root)
    return [rel for rel in chapters(root)
            if _has_outputs(nb := _load(root / rel)) and record.get(rel, {}).get("hash") != made_hash(nb, root)]


def fit_png(data: str, width: int = FIGURE_PX) -> str:
    "A base64 PNG scaled down to `width` pixels (aspect kept, opaque ones without alpha) when that makes it lighter; nbdev-test draws at twice the dpi."
    import base64
    import io
    from PIL import Image
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    if image.width <= width:
        return data
    if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    smaller = base64.b64encode(out.getvalue()).decode("ascii")
    return smaller if len(smaller) < len(data) else data     # blocks of pixels (a scene at 64 px) grow when smoothed


def _fitted(outputs: list) -> list:
    "The outputs of a cell with every PNG fitted to the book's width."
    for out in outputs:
        if "image/png" in out.get("data", {}):
            out["data"]["image/png"] = fit_png(out["data"]["image/png"])
    return outputs


def _machine() -> str:
    "The CPU that executes the book, as the results files name it (chapter 05a's `cpu_model`), and the system."
    from meru_nb.sysinfo import cpu_model
    return f"{cpu_model()}, {platform.system()}"


def _outputs_of(nb: dict) -> list:
    "Every code cell's outputs, in order, without execution counts and metadata (nbdev-clean blanks them): what a reader sees."
    return [[{k: v for k, v in out.items() if k not in ("execution_count", "metadata")} for out in c.get("outputs", [])]
            for c in nb["cells"] if c["cell_type"] == "code"]


def keep(executed: Path, root: Path = ROOT, skip=(RESULTS,)) -> list:
    "Write the outputs of the executed book `executed` (a `make book`) into the chapters of `root`, and record what made them: per chapter, the hash of its code and results, and the date and machine of its outputs (a chapter whose outputs and code did not change keeps its earlier ones)."
    ready, refused, committed = {}, [], {}
    for rel in chapters(root):
        nb = _load(root / rel)
        committed[rel] = _outputs_of(nb)
        if rel in skip:
            _set_outputs(nb, lambda cell: [])
            ready[rel] = nb
            continue
        done = _load(executed / rel) if (executed / rel).is_file() else None
        staged = [stage_cell(copy.deepcopy(c)) for c in nb["cells"]]     # which cells the executed copy holds, in order
        shown = [c for c in staged if c is not None]
        if done is None or _code({"cells": shown}) != _code(done):
            refused.append(rel)
            continue
        ran = iter(c for c in done["cells"] if c["cell_type"] == "code")
        outputs = {id(cell): _fitted(next(ran).get("outputs", [])) for cell, s in zip(nb["cells"], staged)
                   if s is not None and cell["cell_type"] == "code"}
        _set_outputs(nb, lambda cell: outputs.get(id(cell), []))
        ready[rel] = nb
    if refused:                                          # nothing is written unless every chapter can be
        raise SystemExit(f"not kept: {executed} was not executed from the present code of {', '.join(refused)} "
                         "(run make book, then make outputs)")
    before = _record(root)
    now = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "machine": _machine()}
    record = {}
    for rel, nb in ready.items():
        _save(nb, root / rel)
        if rel in skip:
            continue
        made, earlier = made_hash(nb, root), before.get(rel, {})
        unchanged = committed[rel] == _outputs_of(nb) and earlier.get("hash") == made and now.keys() <= earlier.keys()
        record[rel] = {"hash": made, "outputs": _shown(nb), **({k: earlier[k] for k in now} if unchanged else now)}
    made = {"command": "make book, then make outputs", "figures": f"PNGs wider than {FIGURE_PX} px scaled to {FIGURE_PX}",
            "chapters": record}
    (root / OUTPUTS).write_text(json.dumps(made, indent=1) + "\n", encoding="utf-8")
    print(f"kept the outputs of {len(record)} chapters from {executed} in {root / 'nbs'}; recorded in {OUTPUTS}")
    return sorted(record)


def check(root: Path = ROOT, skip=(RESULTS,)) -> list:
    "What is wrong with the committed outputs: stale, never kept, fewer than were kept, on the results chapter, or too heavy."
    problems, record = [], _record(root)
    for rel in chapters(root):
        nb, size = _load(root / rel), (root / rel).stat().st_size
        made = record.get(rel)
        if rel in skip:
            if _has_outputs(nb):
                problems.append(f"{rel}: committed with outputs (make run executes it against the reader's runs)")
        elif made is None:
            if _code(nb):
                problems.append(f"{rel}: its outputs were never kept")
        elif made["hash"] != made_hash(nb, root):
            problems.append(f"{rel}: its code, or a result file it reads, changed since its outputs were made")
        elif _shown(nb) != made["outputs"]:
            problems.append(f"{rel}: {_shown(nb)} cells show an output, {made['outputs']} did when they were kept")
        if size > MAX_CHAPTER_BYTES:
            problems.append(f"{rel}: {size / 1e6:.1f} MB with its outputs (at most {MAX_CHAPTER_BYTES / 1e6:g} MB)")
    return problems


def main(dest, step: str = "all"):
    "`copy` the sources, `transform` them (after they were executed in place), or do `all` at once; `keep` the outputs of an executed book (DEST) in nbs/, or `check` those committed (DEST: the repository)."
    dest = Path(dest)
    if step in ("copy", "all"):
        copy_sources(dest)
    if step in ("transform", "all"):
        transform(dest)
    if step == "keep":
        keep(dest)
    if step == "check":
        problems = check(dest)
        if problems:
            sys.exit("the committed outputs (make book, then make outputs):\n  " + "\n  ".join(problems))
        print("the committed outputs were made by the committed code")


if __name__ == "__main__":
    usage = "\n".join(__doc__.strip().splitlines()[-3:])
    if len(sys.argv) < 2 or (len(sys.argv) > 2 and sys.argv[2] not in ("copy", "transform", "all", "keep", "check")):
        sys.exit(usage)
    if len(sys.argv) > 3:
        sys.exit(usage)
    main(*sys.argv[1:])
