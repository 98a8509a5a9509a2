"""tools/walk.py: the walk of one call through the package's modules (issue 27's measure of evaluate_run and train)."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import walk  # noqa: E402

from meru_nb.models import build_model


def test_a_walk_counts_each_edge_once_and_each_call_every_time():
    once = walk.walk(build_model, "clip", "tiny")
    def twice():
        build_model("clip", "tiny")
        return build_model("clip", "tiny")
    both = walk.walk(twice)
    assert once["modules"] == both["modules"] == ["meru_nb.encoders", "meru_nb.models"]
    assert once["crossings"] == both["crossings"] > 0 and once["entries"] == both["entries"]
    assert both["calls"] == {m: 2 * n for m, n in once["calls"].items()}      # the work done twice shows here
    assert type(both["result"]).__name__ == "CLIPBaseline"
    assert all(a.startswith("meru_nb.models.") and b.startswith("meru_nb.encoders.") for a, b in once["edges"])


def test_the_command_names_a_missing_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        walk.main(["evaluate", str(tmp_path / "nowhere")])
    assert "nowhere' does not exist" in capsys.readouterr().err


def test_the_walk_of_training_stays_in_the_chapters_before_it(tmp_path, capsys):
    "make run's recipe, shortened: the loop, the towers' first steps alone and the checkpoints, and no module of a later chapter."
    assert walk.main(["train", "--steps", "2", "--json", str(tmp_path / "walk.json")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    w = json.loads((tmp_path / "walk.json").read_text())
    assert first == f"train: {w['n_modules']} modules visited, {w['crossings']} crossings between them (each a climb back up when it returns)"
    assert {"meru_nb.train", "meru_nb.pipelines", "meru_nb.checkpoint", "meru_nb.optim", "meru_nb.models"} <= set(w["modules"])
    assert any(a == "meru_nb.train.train_on_pairs" for a, _ in w["edges"])          # the towers' first steps alone ran
    later = {"embed", "stats", "zeroshot", "retrieval", "probe", "binding", "hierarchy", "evaluate", "study", "hycoclip", "finetune"}
    assert not {m.removeprefix("meru_nb.") for m in w["modules"]} & later


def test_the_command_refuses_a_walk_of_one_step(capsys):
    with pytest.raises(SystemExit):
        walk.main(["train", "--steps", "1"])
    assert "--steps must be at least 2, got 1" in capsys.readouterr().err
