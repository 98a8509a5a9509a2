"""The book's staging step: nbdev's `#|` directives never reach Jupyter Book, and hidden cells stay hidden."""
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("stage_book", ROOT / "tools" / "stage_book.py")
stage_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stage_book)


def code(source, tags=None):
    return {"cell_type": "code", "metadata": {"tags": tags} if tags else {}, "source": source,
            "outputs": [], "execution_count": None}


@pytest.mark.parametrize("directive, tag", [("hide", "remove-cell"), ("include: false", "remove-cell"),
                                            ("echo: false", "remove-input"), ("output: false", "remove-output"),
                                            ("eval: false", "skip-execution")])
def test_hiding_directives_become_tags(directive, tag):
    "Each hiding directive maps to the Jupyter Book tag that hides the same thing, and its line is gone."
    cell = stage_book.stage_cell(code(f"#| {directive}\nx = 1"))
    assert cell["metadata"]["tags"] == [tag]
    assert cell["source"] == "x = 1"


def test_export_line_is_stripped_and_code_shown():
    "An exported cell shows its code without the directive (the book reads the code)."
    cell = stage_book.stage_cell(code(["#| export\n", "def f(): pass"], tags=["hide-input"]))
    assert cell["source"] == "def f(): pass"
    assert cell["metadata"]["tags"] == ["hide-input"]


def test_directive_only_cell_is_dropped_and_markdown_untouched():
    "A cell of directives alone (default_exp) is dropped; markdown and plain cells pass unchanged."
    assert stage_book.stage_cell(code("#| default_exp lorentz\n")) is None
    md = {"cell_type": "markdown", "metadata": {}, "source": "#| not a directive in markdown"}
    assert stage_book.stage_cell(dict(md)) == md
    assert stage_book.stage_cell(code("y = 2")) == code("y = 2")


def test_staged_notebooks_have_no_directives(tmp_path):
    "Staging the real book leaves no `#|` line in any code cell and stages exactly the chapters of the toc."
    stage_book.main(tmp_path / "book")
    notebooks = sorted((tmp_path / "book" / "nbs").glob("*.ipynb"))
    toc = set(re.findall(r"(?:root|file):\s*nbs/(\S+)", (ROOT / "_toc.yml").read_text()))
    assert toc and {p.stem for p in notebooks} == toc
    assert all((ROOT / "nbs" / f"{name}.ipynb").exists() for name in toc)
    for nb in notebooks:
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                assert not any(stage_book.DIRECTIVE.match(line) for line in src.splitlines()), (nb.name, src)


def test_every_notebook_is_a_chapter_or_a_run_notebook():
    "Notebooks outside the toc are the papermill run notebooks (2x_), never a forgotten chapter."
    toc = set(re.findall(r"(?:root|file):\s*nbs/(\S+)", (ROOT / "_toc.yml").read_text()))
    outside = {p.stem for p in (ROOT / "nbs").glob("[0-9]*.ipynb")} - toc
    assert outside and all(re.match(r"2\d_", name) for name in outside), outside


def _write(path: Path, cells):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_the_book_cites_papers_not_the_developers_notes():
    "The book's readers do not have the developers' REFERENCE.md: chapters cite the paper or state the fact."
    import json, re
    root = Path(__file__).resolve().parent.parent
    found = []
    for nb in sorted((root / "nbs").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
            text = "".join(cell["source"])
            found += [f"{nb.name} cell {i}: {m.group(0)}" for m in re.finditer(r"\bREFERENCE(?![_A-Za-z])(\.md)?\s*§?\d*|MERU §\d", text)]
    assert not found, "\n".join(found)


def test_repository_links_appear_only_when_the_url_is_set():
    "The repository URL lives once in _config.yml; unset, the staged book links nowhere; set, every button points into it."
    import yaml
    text = (ROOT / "_config.yml").read_text()
    assert yaml.safe_load(text)["repository"]["url"] == ""          # the project names no made-up URL
    unset = yaml.safe_load(stage_book.book_config(text))
    assert not any(unset["html"][k] for k in ("use_repository_button", "use_issues_button", "use_edit_page_button"))
    assert "launch_buttons" not in unset or not unset["launch_buttons"].get("colab_url")
    with_url = text.replace('url: ""', 'url: "https://github.com/someone/meru_nb"')
    staged = yaml.safe_load(stage_book.book_config(with_url))
    assert staged["repository"]["url"] == "https://github.com/someone/meru_nb"
    assert all(staged["html"][k] for k in ("use_repository_button", "use_issues_button", "use_edit_page_button"))
    assert staged["launch_buttons"]["colab_url"] and staged["launch_buttons"]["binderhub_url"]
    assert staged["sphinx"] == yaml.safe_load(text)["sphinx"]          # nothing else changes
    with pytest.raises(SystemExit, match="repository.url"):
        stage_book.book_config(text.replace('url: ""', 'url: "github.com/someone"'))


def test_the_pages_workflow_parses_and_calls_existing_targets():
    "The publishing workflow cannot run here: it is valid YAML, its make steps are targets of the Makefile, and it deploys what make run builds."
    import yaml
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    assert flow[True if True in flow else "on"]["push"]["branches"] == ["main"]    # PyYAML reads the key `on` as True
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    made = [s["run"].split()[1] for s in steps if s.get("run", "").startswith("make ")]
    assert made == ["run"] and set(made) <= targets
    uses = {s["uses"].split("@")[0] for s in steps if "uses" in s}
    assert {"actions/upload-pages-artifact", "actions/deploy-pages"} <= uses
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/run-book/_build/html"
    assert "RUN_HTML := $(RUN_BOOK)/_build/html" in (ROOT / "Makefile").read_text() and "RUN_BOOK := _build/run-book" in (ROOT / "Makefile").read_text()


def test_make_help_names_every_target():
    "`make help` lists every target of the Makefile, each once, so that none is found only by reading it."
    import subprocess
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):(?!=)", makefile, re.M)) - {"help"}
    phony = set(re.search(r"^\.PHONY: (.*)$", makefile, re.M).group(1).split()) - {"help"}
    assert targets == phony, f"targets and .PHONY differ: {sorted(targets ^ phony)}"
    shown = re.findall(r"^  make ([\w-]+)", subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True,
                                                             text=True, check=True).stdout, re.M)
    assert sorted(shown) == sorted(targets), f"missing from make help: {sorted(targets - set(shown))}"


def _stream(text):
    return [{"output_type": "stream", "name": "stdout", "text": text}]


def _small_book(root: Path):
    "A book of three chapters as the repository holds one: a toc, notebooks with directives, a results chapter."
    root.mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: nbs/00_a\nchapters:\n  - file: nbs/01_b\n  - file: nbs/22_results\n")
    md = {"cell_type": "markdown", "metadata": {}, "source": "prose"}
    _write(root / "nbs" / "00_a.ipynb", [code("#| default_exp a\n"), md, code("#| hide\nprint('setup')"), code("print(1)  # results/study.json")])
    _write(root / "nbs" / "01_b.ipynb", [md, code("print(2)")])
    (root / "nbs" / "results").mkdir()
    (root / "nbs" / "results" / "study.json").write_text('{"runs": 3}\n')     # what 00_a's last cell reads
    _write(root / "nbs" / "22_results.ipynb", [code("print('runs')")])


def _execute(root: Path, executed: Path):
    "What make book leaves: each chapter staged (directive-only cells dropped), each code cell with the output of its print."
    for rel in stage_book.chapters(root):
        (executed / rel).parent.mkdir(parents=True, exist_ok=True)
        stage_book.stage_notebook(root / rel, executed / rel)
        nb = json.loads((executed / rel).read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = _stream(re.sub(r"print\('?(\w+)'?\).*", r"\1", cell["source"]) + "\n"), 1
        (executed / rel).write_text(json.dumps(nb))


def test_keep_puts_each_output_under_the_cell_that_made_it(tmp_path):
    "make outputs: the executed book's outputs land in the chapters cell by cell (a hidden cell's too), the results chapter stays unexecuted."
    _small_book(tmp_path / "repo")
    _execute(tmp_path / "repo", tmp_path / "book")
    assert stage_book.keep(tmp_path / "book", tmp_path / "repo") == ["nbs/00_a.ipynb", "nbs/01_b.ipynb"]
    cells = json.loads((tmp_path / "repo" / "nbs" / "00_a.ipynb").read_text())["cells"]
    assert [c.get("outputs") for c in cells] == [[], None, _stream("setup\n"), _stream("1\n")]
    assert all(c.get("execution_count") is None for c in cells)
    assert json.loads((tmp_path / "repo" / "nbs" / "22_results.ipynb").read_text())["cells"][0]["outputs"] == []
    record = json.loads((tmp_path / "repo" / stage_book.OUTPUTS).read_text())
    assert set(record["chapters"]) == {"nbs/00_a.ipynb", "nbs/01_b.ipynb"} and record["command"]
    assert all(c["date"] and c["machine"] for c in record["chapters"].values())
    assert stage_book.check(tmp_path / "repo") == [] and stage_book.stale(tmp_path / "repo") == []


def test_keep_dates_each_chapter_by_the_run_that_made_its_outputs(tmp_path, monkeypatch):
    "A chapter executed again with the same outputs keeps its date and machine; one whose outputs changed gets this run's."
    repo, book = tmp_path / "repo", tmp_path / "book"
    _small_book(repo)
    _execute(repo, book)
    nb = json.loads((book / "nbs" / "00_a.ipynb").read_text())      # as executed: metadata that nbdev-clean blanks
    nb["cells"][-1]["outputs"][0]["metadata"] = {"image/png": {"width": 782}}
    (book / "nbs" / "00_a.ipynb").write_text(json.dumps(nb))
    monkeypatch.setattr(stage_book, "_machine", lambda: "first CPU, Linux")
    stage_book.keep(book, repo)
    nb = json.loads((repo / "nbs" / "00_a.ipynb").read_text())      # make outputs runs nbdev-clean after keep
    nb["cells"][-1]["outputs"][0]["metadata"] = {}
    (repo / "nbs" / "00_a.ipynb").write_text(json.dumps(nb))
    first = json.loads((repo / stage_book.OUTPUTS).read_text())["chapters"]
    assert {c["machine"] for c in first.values()} == {"first CPU, Linux"} and all(c["date"] for c in first.values())
    nb = json.loads((book / "nbs" / "01_b.ipynb").read_text())
    nb["cells"][-1]["outputs"] = _stream("2.0\n")                  # another machine prints another number
    (book / "nbs" / "01_b.ipynb").write_text(json.dumps(nb))
    monkeypatch.setattr(stage_book, "_machine", lambda: "second CPU, Linux")
    stage_book.keep(book, repo)
    second = json.loads((repo / stage_book.OUTPUTS).read_text())["chapters"]
    assert second["nbs/00_a.ipynb"] == first["nbs/00_a.ipynb"]
    assert second["nbs/01_b.ipynb"]["machine"] == "second CPU, Linux" and second["nbs/01_b.ipynb"]["hash"] == first["nbs/01_b.ipynb"]["hash"]
    assert stage_book.check(repo) == []


def test_check_fails_on_changed_code_lost_outputs_an_executed_results_chapter_and_weight(tmp_path, monkeypatch):
    "Each way committed outputs can mislead is named: code or a result file changed since they were made, outputs lost, never kept, the reader's results, megabytes."
    repo = tmp_path / "repo"
    _small_book(repo)
    _execute(repo, tmp_path / "book")
    stage_book.keep(tmp_path / "book", repo)
    path = repo / "nbs" / "01_b.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"][0]["source"] = "prose, rewritten"                     # prose may change: the outputs still hold
    path.write_text(json.dumps(nb))
    assert stage_book.check(repo) == []
    nb["cells"][1]["source"] = "print(3)"                             # code may not
    path.write_text(json.dumps(nb))
    assert stage_book.stale(repo) == ["nbs/01_b.ipynb"]
    assert stage_book.check(repo) == ["nbs/01_b.ipynb: its code, or a result file it reads, changed since its outputs were made"]
    nb["cells"][1]["outputs"] = []
    path.write_text(json.dumps(nb))
    assert stage_book.check(repo) == ["nbs/01_b.ipynb: its code, or a result file it reads, changed since its outputs were made"]
    nb["cells"][1]["source"] = "print(2)"                             # the code back, its output gone
    path.write_text(json.dumps(nb))
    assert stage_book.check(repo) == ["nbs/01_b.ipynb: 0 cells show an output, 1 did when they were kept"]
    (repo / "nbs" / "results" / "study.json").write_text('{"runs": 4}\n')   # a study re-run: 00_a's outputs are stale
    assert stage_book.stale(repo) == ["nbs/00_a.ipynb"]
    (repo / "nbs" / "results" / "study.json").write_text('{"runs": 3}\n')
    (repo / stage_book.OUTPUTS).unlink()
    assert stage_book.check(repo) == [f"nbs/{name}.ipynb: its outputs were never kept" for name in ("00_a", "01_b")]
    results = repo / "nbs" / "22_results.ipynb"
    _write(results, [dict(code("print('runs')"), outputs=_stream("runs\n"))])
    assert any("22_results.ipynb: committed with outputs" in p for p in stage_book.check(repo))
    monkeypatch.setattr(stage_book, "MAX_CHAPTER_BYTES", 100)
    assert any("00_a.ipynb" in p and "MB with its outputs" in p for p in stage_book.check(repo))


def test_keep_refuses_a_book_executed_from_other_code(tmp_path):
    "Outputs of an older make book are never kept for code that changed after it: keep names the chapter and writes nothing."
    repo = tmp_path / "repo"
    _small_book(repo)
    _execute(repo, tmp_path / "book")
    _write(repo / "nbs" / "01_b.ipynb", [code("print(4)")])
    before = {p: p.read_bytes() for p in (repo / "nbs").rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match="01_b.ipynb"):
        stage_book.keep(tmp_path / "book", repo)
    assert not (repo / stage_book.OUTPUTS).exists()
    assert {p: p.read_bytes() for p in (repo / "nbs").rglob("*") if p.is_file()} == before



def test_fit_png_scales_wide_figures_to_the_books_width_and_leaves_the_rest():
    "A figure drawn at twice the dpi is kept at the book's width, aspect kept, opaque ones without alpha, when that is lighter; a narrow one is untouched."
    import base64, io
    from PIL import Image
    def png(width, height, mode="RGBA"):
        rng = np.random.default_rng(0)                 # noise, as in a rendered scene: smaller when scaled down
        pixels = rng.integers(0, 256, (height, width, 4 if mode == "RGBA" else 3), dtype=np.uint8)
        if mode == "RGBA":
            pixels[..., 3] = 255
        out = io.BytesIO()
        Image.fromarray(pixels, mode).save(out, "PNG")
        return base64.b64encode(out.getvalue()).decode()
    open_ = lambda data: Image.open(io.BytesIO(base64.b64decode(data)))
    wide = open_(stage_book.fit_png(png(3200, 800)))
    assert wide.size == (stage_book.FIGURE_PX, 400) and wide.mode == "RGB"
    blocks = io.BytesIO()                               # a few flat blocks, drawn wide: smoothing them only adds bytes
    small = np.random.default_rng(1).integers(0, 256, (16, 64, 3), dtype=np.uint8)   # a 64 px scene, each pixel a block
    Image.fromarray(small, "RGB").resize((3200, 800), Image.NEAREST).save(blocks, "PNG")
    flat = base64.b64encode(blocks.getvalue()).decode()
    assert stage_book.fit_png(flat) == flat
    narrow = png(stage_book.FIGURE_PX, 50)
    assert stage_book.fit_png(narrow) == narrow
    out = stage_book._fitted([{"output_type": "display_data", "data": {"image/png": png(2000, 100), "text/plain": "<Figure>"}}])
    assert open_(out[0]["data"]["image/png"]).width == stage_book.FIGURE_PX and out[0]["data"]["text/plain"] == "<Figure>"


def test_the_committed_chapters_carry_outputs_made_by_their_code():
    "Every chapter but the results one is committed with the outputs of its present code and results (make book, then make outputs), none heavier than MAX_CHAPTER_BYTES."
    assert stage_book.check(ROOT) == []
