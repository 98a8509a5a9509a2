"""The package's layout stays as designed: no import cycle between its modules, no module imports
another module's private (underscore) names, and a chapter's module imports only the modules of earlier
chapters (the book's order, `_toc.yml`). Imports are read from the source (every `import`
statement, also those inside functions, and `importlib.import_module` of a literal name), so a lazy
import counts like any other."""
import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "meru_nb"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "_modidx"))


def _absolute(module: str, node: ast.ImportFrom) -> str:
    "The absolute module name of a `from ... import` in `meru_nb.<module>`."
    if node.level == 0:
        return node.module or ""
    if node.level > 1:
        raise ValueError(f"meru_nb.{module}: an import {node.level} levels up leaves the package")
    return ".".join(["meru_nb"] + ([node.module] if node.module else []))


def imports_of(module: str) -> list[tuple[str, str | None, int]]:
    "(imported meru_nb module, imported name or None, line) for every import in meru_nb/<module>.py."
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("meru_nb")]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            if target == "meru_nb":                  # from meru_nb import models, bench
                found += [(f"meru_nb.{a.name}", None, node.lineno) for a in node.names]
            elif target.startswith("meru_nb."):
                found += [(target, a.name, node.lineno) for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("meru_nb.")):
            found.append((node.args[0].value, None, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    "Module -> the package modules it imports (itself excluded)."
    return {m: {t.removeprefix("meru_nb.") for t, _, _ in imports_of(m)} - {m} for m in MODULES}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    "One import cycle as a list of modules (first == last), or None."
    state, stack = {}, []
    def visit(m):
        state[m] = "open"; stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = "done"; stack.pop()
        return None
    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_checker_sees_cycles_and_lazy_imports():
    "The checker itself: a planted cycle is found, an acyclic graph passes, a function-level import counts."
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    lazy = [(t, n) for t, n, _ in imports_of("pipelines") if t == "meru_nb.models"]
    assert lazy, "pipelines imports build_model inside a function: the checker must see it"


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", MODULES)
def test_no_private_names_from_other_modules(module):
    private = [f"line {line}: {name} from {target}" for target, name, line in imports_of(module)
               if name and name.startswith("_") and target != f"meru_nb.{module}"]
    assert not private, f"meru_nb.{module} imports private names of other modules: " + "; ".join(private)


def test_readme_layout_table_lists_every_module_and_its_chapter():
    "README's 'Where a change goes' names each module once, with the chapter whose notebook exports it."
    import json, re
    root = PACKAGE.parent
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Where a change goes"):]
    rows = re.findall(r"^\| `(\w+)` \| .+ \| (\w+) \|$", section.split("\n\n", 3)[2], re.M)
    exported = {}
    for nb in (root / "nbs").glob("*.ipynb"):
        first = "".join(json.loads(nb.read_text(encoding="utf-8"))["cells"][0]["source"])
        if m := re.search(r"#\| default_exp (\w+)", first):
            exported[m[1]] = nb.stem.split("_")[0]
    assert [m for m, _ in rows] == sorted({m for m, _ in rows}, key=[m for m, _ in rows].index), "a module listed twice"
    assert {m for m, _ in rows} == set(MODULES), f"modules missing or extra: {set(MODULES) ^ {m for m, _ in rows}}"
    assert all(exported[m] == chapter for m, chapter in rows), [(m, c, exported[m]) for m, c in rows if exported[m] != c]


# The imports that reach a later chapter: none (issue 27 moved the last ones). Kept as a named empty
# set so that an exception, if one is ever needed, is written down here and the test says so.
LATER_IMPORTS: dict[str, set[str]] = {}


def chapter_order() -> dict[str, int]:
    "Module -> its chapter's place in the book (`_toc.yml`), as the chapter map reads them (tools/chapter_map.py)."
    import sys
    sys.path.insert(0, str(PACKAGE.parent / "tools"))
    import chapter_map
    return {ch.module.removeprefix("meru_nb."): k for k, ch in enumerate(chapter_map.chapters(PACKAGE.parent))
            if ch.module.startswith("meru_nb.")}


def later_imports(edges: dict[str, set[str]], place: dict[str, int]) -> dict[str, set[str]]:
    "Module -> the modules it imports that come later in the book (the package itself, `import meru_nb`, is no chapter)."
    return {m: later for m, targets in edges.items() if (later := {t for t in targets if t in place and place[t] > place[m]})}


def test_the_order_checker_sees_a_later_import():
    assert later_imports({"a": {"b"}, "b": set(), "c": {"a", "b"}}, {"a": 0, "b": 1, "c": 2}) == {"a": {"b"}}
    assert "sysinfo" in graph()["pipelines"] and chapter_order()["sysinfo"] < chapter_order()["pipelines"]


def test_a_chapter_imports_only_earlier_chapters():
    "The package's front door (`__init__`, the introduction) is left out: it names the whole book."
    place = chapter_order()
    assert set(MODULES) <= set(place), f"modules without a chapter in _toc.yml: {set(MODULES) - set(place)}"
    found = later_imports(graph(), place)
    assert found == LATER_IMPORTS, {m: (found.get(m), LATER_IMPORTS.get(m)) for m in set(found) | set(LATER_IMPORTS)
                                    if found.get(m) != LATER_IMPORTS.get(m)}


def test_every_make_target_is_in_the_help_and_the_readme():
    "One text for each command: each target of the Makefile's .PHONY line has a line in `make help` and appears in the README."
    root = PACKAGE.parent
    makefile = (root / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)[1].split()
    targets = {m[1] for m in re.finditer(r"^([a-z][\w-]*):", makefile, re.M)}
    assert set(phony) == targets, f"targets and .PHONY differ: {set(phony) ^ targets}"
    help_text = makefile[makefile.index("help:"):makefile.index("\n\n", makefile.index("help:"))]
    readme = (root / "README.md").read_text()
    missing = {t: [where for where, text in (("help", help_text), ("README", readme))
                   if not re.search(rf"make {re.escape(t)}(?![\w-])", text)] for t in phony if t != "help"}
    assert not any(missing.values()), {t: w for t, w in missing.items() if w}
