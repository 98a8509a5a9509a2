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

`make run` only re-executes the results chapter, the one page that depends on its runs. Its `reuse`
step gives every other staged chapter the outputs of an executed copy (the last `make book`'s) when
that copy's code is the same, and reports the chapters it could not fill, which the book then shows
unexecuted.

Usage: python tools/stage_book.py DEST [copy|transform|all]
       python tools/stage_book.py DEST reuse EXECUTED_BOOK [CHAPTER_TO_SKIP ...]
"""
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


def transform(dest: Path):
    "Rewrite every staged notebook for Jupyter Book, keeping the outputs it may already hold."
    notebooks = sorted((dest / "nbs").rglob("*.ipynb"))
    for nb in notebooks:
        stage_notebook(nb, nb)
    print(f"staged {len(notebooks)} notebooks in {dest}")


def _code(nb: dict) -> list:
    "The source of each code cell, in order: what must match for outputs to be reused (prose may change)."
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["cells"] if c["cell_type"] == "code"]


def reuse(dest: Path, executed: Path, skip=()) -> tuple:
    "Copy outputs into the staged chapters of `dest` from their executed copies in `executed` when the code matches."
    filled, left = [], []
    for nb_path in sorted((dest / "nbs").rglob("*.ipynb")):
        rel = nb_path.relative_to(dest).as_posix()
        if rel in skip:
            continue
        old_path = executed / rel
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        old = json.loads(old_path.read_text(encoding="utf-8")) if old_path.is_file() else None
        if old is None or _code(old) != _code(nb) or not any(c.get("outputs") for c in old["cells"]):
            left.append(rel)
            continue
        code = lambda book: [c for c in book["cells"] if c["cell_type"] == "code"]
        for cell, done in zip(code(nb), code(old)):
            cell["outputs"], cell["execution_count"] = done.get("outputs", []), done.get("execution_count")
        nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        filled.append(rel)
    print(f"reused the outputs of {len(filled)} chapters from {executed}"
          + (f"; shown unexecuted (run `make book` to execute them): {', '.join(left)}" if left else ""))
    return filled, left


def main(dest, step: str = "all", *args):
    "`copy` the sources, `transform` them (after they were executed in place), or do `all` at once."
    dest = Path(dest)
    if step in ("copy", "all"):
        copy_sources(dest)
    if step in ("transform", "all"):
        transform(dest)
    if step == "reuse":
        reuse(dest, Path(args[0]), set(args[1:]))


if __name__ == "__main__":
    usage = "\n".join(__doc__.strip().splitlines()[-2:])
    if len(sys.argv) < 2 or (len(sys.argv) > 2 and sys.argv[2] not in ("copy", "transform", "all", "reuse")):
        sys.exit(usage)
    if (len(sys.argv) > 2 and sys.argv[2] == "reuse") != (len(sys.argv) > 3):
        sys.exit(usage)
    main(*sys.argv[1:])
