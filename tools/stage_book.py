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

Usage: python tools/stage_book.py DEST
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


def main(dest: str):
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "_*.ipynb", "llms.txt")
    shutil.copytree(ROOT / "nbs", dest / "nbs", ignore=ignore)
    for nb in sorted((dest / "nbs").rglob("*.ipynb")):
        stage_notebook(nb, nb)
    print(f"staged {len(list((dest / 'nbs').rglob('*.ipynb')))} notebooks in {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1])
