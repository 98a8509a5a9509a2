"""The map of the book has one source: README's table and the introduction's list are what
tools/chapter_map.py makes of `_toc.yml` and the notebooks' titles, summaries and modules."""
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import chapter_map  # noqa: E402


def _generated(text: str) -> str:
    return text.split(chapter_map.START)[1].split(chapter_map.END)[0]


def _intro_text(root: Path) -> str:
    nb = json.loads((root / chapter_map.INTRO).read_text(encoding="utf-8"))
    return "".join(c for cell in nb["cells"] for c in cell["source"] if cell["cell_type"] == "markdown")


def test_readme_and_intro_agree_with_the_toc():
    assert chapter_map.stale() == [], "the chapter map is out of date: run `.venv/bin/python tools/chapter_map.py --write`"


def test_the_maps_list_the_toc_in_order_with_each_notebooks_module():
    "Read without the tool: the toc's pages in order, and the `default_exp` of each, as README and the intro show them."
    pages = re.findall(r"(?:root|file):\s*nbs/(\S+)", (ROOT / "_toc.yml").read_text())
    modules = {}
    for stem in pages:
        m = re.search(r"#\|\s*default_exp\s+(\w+)", (ROOT / "nbs" / f"{stem}.ipynb").read_text(encoding="utf-8"))
        modules[stem] = "" if m is None else "meru_nb" if m[1] == "__init__" else f"meru_nb.{m[1]}"
    rows = re.findall(r"^\|[^|]*\| \[[^]]+\]\(nbs/(\w+)\.ipynb\) \| `?([\w.]*)`? \|", _generated((ROOT / "README.md").read_text()), re.M)
    assert rows == [(stem, modules[stem]) for stem in pages]
    listed = re.findall(r"^- \[[^]]+\]\((\w+)\.ipynb\)(?: \(`([\w.]+)`\))?", _generated(_intro_text(ROOT)), re.M)
    assert listed == [(stem, modules[stem]) for stem in pages if stem != "00_intro"]
    assert "20_train" not in modules and "nbs/20_train.ipynb" in (ROOT / "README.md").read_text()


def test_a_chapter_reads_its_title_summary_and_module():
    ch = chapter_map.read_chapter(ROOT, "Choosing the recipe", "11_study")
    assert (ch.number, ch.module) == ("11", "meru_nb.study")
    assert ch.summary.startswith("The recipe of `make run`") and "\n" not in ch.summary and ch.summary.endswith("trains.")
    assert chapter_map.read_chapter(ROOT, "", "00_intro").module == "meru_nb"
    assert chapter_map.read_chapter(ROOT, "Results", "22_results").module == ""


@pytest.fixture
def project(tmp_path):
    "A copy of what the map is made from, for planting disagreements."
    for name in ("README.md", "_toc.yml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "nbs", tmp_path / "nbs", ignore=shutil.ignore_patterns("results", ".ipynb_checkpoints"))
    assert chapter_map.stale(tmp_path) == []
    return tmp_path


def test_a_reordered_or_shortened_toc_is_caught(project):
    toc = project / "_toc.yml"
    text = toc.read_text()
    toc.write_text(text.replace("nbs/01_lorentz\n      - file: nbs/02_expmap", "nbs/02_expmap\n      - file: nbs/01_lorentz"))
    assert chapter_map.stale(project) == ["README.md", chapter_map.INTRO]
    toc.write_text(text.replace("      - file: nbs/05a_sysinfo\n", ""))
    assert chapter_map.stale(project) == ["README.md", chapter_map.INTRO]
    assert chapter_map.write(project) == ["README.md", chapter_map.INTRO] and chapter_map.stale(project) == []
    assert "05a_sysinfo" not in _generated((project / "README.md").read_text())


def test_a_changed_module_or_summary_is_caught(project):
    nb = project / "nbs" / "03_entailment.ipynb"
    nb.write_text(nb.read_text(encoding="utf-8").replace("default_exp entailment", "default_exp cones"), encoding="utf-8")
    assert chapter_map.stale(project) == ["README.md", chapter_map.INTRO]
    chapter_map.write(project)
    nb = project / "nbs" / "05_models.ipynb"
    nb.write_text(nb.read_text(encoding="utf-8").replace("> MERU and its CLIP baseline", "> MERU and CLIP"), encoding="utf-8")
    assert chapter_map.stale(project) == ["README.md", chapter_map.INTRO]


def test_a_hand_edit_of_the_readme_is_caught_and_written_over(project):
    readme = project / "README.md"
    intro_before = (project / chapter_map.INTRO).read_text(encoding="utf-8")
    readme.write_text(readme.read_text().replace("`meru_nb.lorentz`", "`meru_nb.hyperboloid`", 1))
    assert chapter_map.stale(project) == ["README.md"]
    assert chapter_map.write(project) == ["README.md"] and "`meru_nb.lorentz`" in readme.read_text()
    assert (project / chapter_map.INTRO).read_text(encoding="utf-8") == intro_before    # the intro was not rewritten


def test_missing_markers_are_an_error(project):
    readme = project / "README.md"
    readme.write_text(readme.read_text().replace(chapter_map.END, ""))
    with pytest.raises(ValueError, match="markers"):
        chapter_map.stale(project)
