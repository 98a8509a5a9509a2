"""`meru-nb study NAME`: every study the chapters read is reachable by name, and every `make study-*` target calls one."""
import re
from pathlib import Path

import pytest

from meru_nb.cli import STUDIES, main

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_each_study_answers_help_with_its_own_options(name, capsys):
    with pytest.raises(SystemExit) as e:
        main(["study", name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: meru-nb study") and "--out" in out


def test_the_flag_that_picks_a_study_reaches_its_parser(capsys):
    "steps, remedies and binding share a module; a wrong flag there would run the lambda study instead."
    for name, flag in (("steps", "--compare-steps"), ("remedies", "--remedies"), ("binding", "--binding")):
        assert STUDIES[name][2] == [flag]
    with pytest.raises(SystemExit) as e:                  # the flag is parsed, then --steps needs a number
        main(["study", "steps", "--steps", "many"])
    assert e.value.code == 2 and "invalid int value: 'many'" in capsys.readouterr().err


def test_unknown_study_is_an_error_listing_the_studies(capsys):
    assert main(["study", "lamda"]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'lamda'" in err and all(name in err for name in STUDIES)
    assert main(["study"]) == 2 and main(["study", "--help"]) == 0


def test_every_make_study_target_calls_a_named_study():
    recipes = re.findall(r"^(study[\w-]*|emoji):.*\n((?:\t.*\n)+)", MAKEFILE.read_text(), flags=re.M)
    called = {target: re.findall(r"meru-nb study (\w+)", body) for target, body in recipes}
    assert set(called) >= {"study", "study-remedies", "study-steps", "study-binding", "study-capacity",
                           "study-hycoclip", "study-finetune", "emoji"}
    for target, names in called.items():
        assert len(names) == 1 and names[0] in STUDIES, (target, names)
    assert sorted(n for names in called.values() for n in names) == sorted(STUDIES)


def test_the_lambda_study_takes_seeds_and_the_binding_start(capsys, monkeypatch):
    "--seeds picks the grid's seeds (a negative one is refused by name); --binding-start adds the binding start (BINDING_START) to every run."
    with pytest.raises(SystemExit) as e:
        main(["study", "lambda", "--seeds", "0", "-1"])
    assert e.value.code == 2 and "--seeds must be whole numbers >= 0, got [0, -1]" in capsys.readouterr().err
    from meru_nb import study
    calls = []
    monkeypatch.setattr(study, "run_study", lambda *a, **k: calls.append((a, k)) or {"runs": [], "wall_seconds": 0.0})
    assert main(["study", "lambda", "--binding-start", "--seeds", "0", "2", "--out", "x.json"]) == 0
    (out, work), kwargs = calls[0]
    assert (out, work) == ("x.json", "runs/study_start") and kwargs["seeds"] == (0, 2)
    assert kwargs["start"] == study.BINDING_START and kwargs["command"] == "meru-nb study lambda --binding-start --seeds 0 2 --out x.json"
    assert main(["study", "lambda", "--seeds", "1"]) == 0
    assert "start" not in calls[1][1] and calls[1][1]["seeds"] == (1,) and calls[1][0][:2] == ("nbs/results/lambda_study.json", "runs/study")
    assert main(["study", "lambda", "--binding-start", "--lambdas", "0.2", "--seeds", "1", "2"]) == 0
    assert calls[2][1]["lambdas"] == (0.2,) and calls[2][1]["seeds"] == (1, 2)
    assert calls[2][1]["command"] == "meru-nb study lambda --binding-start --lambdas 0.2 --seeds 1 2"
    with pytest.raises(SystemExit) as e:
        main(["study", "lambda", "--lambdas", "0.2", "-0.1"])
    assert e.value.code == 2 and "--lambdas must be finite and >= 0, got [0.2, -0.1]" in capsys.readouterr().err


@pytest.mark.parametrize("start", [None, {"pretrain_text": 3}])
def test_the_lambda_study_trains_its_contrast_at_the_seeds_it_answers_for(start, tmp_path, monkeypatch):
    "The bag of tokens once, at the first seed; with a start, the run without the λ warm-up at every seed."
    import json
    from meru_nb import study
    trained = []
    def pool(jobs, argv_of, workers, desc):
        for job in jobs:
            argv = argv_of(job); trained.append(argv)
            Path(argv[3]).mkdir(parents=True); Path(argv[3], "study.json").write_text(json.dumps({"folder": argv[3]}))
    monkeypatch.setattr(study, "run_pool", pool)
    out = study.run_study(str(tmp_path / "s.json"), str(tmp_path / "runs"), lambdas=(0.0, 0.2), seeds=(1, 2), start=start)
    names = [Path(a[3]).name for a in trained]
    contrast = (["cpu_lambda0.2_seed1_entail_warmup0", "cpu_lambda0.2_seed2_entail_warmup0"] if start
                else ["cpu_bag_lambda0.2_seed1"])
    assert names == ["cpu_lambda0_seed1", "cpu_lambda0_seed2", "cpu_lambda0.2_seed1", "cpu_lambda0.2_seed2", *contrast]
    assert all(json.loads(a[6]) == {**(start or {}), **({"entail_warmup": 0} if "warmup0" in a[3] else {})} for a in trained)
    assert [r["folder"] for r in out["runs"]] == [a[3] for a in trained]
    assert json.loads((tmp_path / "s.json").read_text())["start"] == (start or {})
