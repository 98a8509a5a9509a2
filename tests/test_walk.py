"""tools/walk.py: the walk of one call through the package's modules (issue 27's measure of evaluate_run)."""
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
