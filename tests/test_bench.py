"""Smoke test of meru_nb.bench: the benchmark function and its command line at tiny sizes."""
import json
import subprocess
import sys

import pytest
import torch

from meru_nb import bench

TINY = dict(dim=16, repeats=1, warmup=1, verbose=False)


def check_results(results, compare_sizes, solo_sizes, memory=True):
    "The fields every results file must have, and a passing match check at every compared size."
    assert results["benchmark"] == "geometry"
    for key in ("cpu_model", "cpu_count", "torch_threads", "device"):
        assert results["hardware"][key]
    assert results["software"]["torch"] == torch.__version__ and results["software"]["geoopt"]
    assert results["settings"]["compare_sizes"] == compare_sizes
    assert results["settings"]["solo_sizes"] == solo_sizes
    assert [r["batch"] for r in results["results"]] == compare_sizes + solo_sizes
    for r in results["results"]:
        ours = r["ours"]
        assert ours["median_s"] > 0 and len(ours["times_s"]) == results["settings"]["repeats"]
        if memory or r["mode"] == "solo":
            assert isinstance(ours["peak_memory_bytes"], int) and ours["memory_method"]
        if r["mode"] == "compared":
            assert r["match"]["ok"] and r["match"]["rel_loss_diff"] <= 1e-5
            assert r["match"]["max_rel_grad_diff"] < 1e-4
            assert r["speedup"] == pytest.approx(r["geoopt"]["median_s"] / ours["median_s"])
        else:
            assert r["mode"] == "solo" and "geoopt" not in r


def test_bench_geometry_function():
    "The benchmark: a compared size in this process, a solo size in a fresh process."
    results = bench.bench_geometry(compare_sizes=(8,), solo_sizes=(16,), goal=(8, 0.0), memory=False, **TINY)
    check_results(results, [8], [16], memory=False)
    assert results["goal"] == {"batch": 8, "min_speedup": 0.0, "speedup": results["results"][0]["speedup"], "met": True}
    assert json.loads(json.dumps(results)) == results
    assert "| 8 |" in bench.results_table(results)


def test_run_fresh_geoopt():
    "The geoopt version also runs in a fresh process (the compared sizes' memory runs)."
    fresh = bench.run_fresh("geoopt", 8, dim=16, warmup=1, repeats=2)
    assert len(fresh["times_s"]) == 2 and fresh["memory_steps"] == 3
    assert isinstance(fresh["peak_memory_bytes"], int) and fresh["memory_method"]


def test_losses_agree_in_float64():
    "At another curvature and seed, in float64, the two versions agree far below the benchmark's 1e-5."
    inputs = bench.make_inputs(16, dim=16, curv=0.5, dtype=torch.float64, seed=3)
    ours, theirs = (bench.forward_backward(fn, *inputs) for fn in (bench.meru_geometry_loss, bench.geoopt_geometry_loss))
    match = bench.compare_outputs(ours, theirs)
    # in float64 only rounding and the formulas' tiny guards (the half-aperture's + 1e-8) remain
    assert match["ok"] and match["rel_loss_diff"] < 1e-8 and match["max_rel_grad_diff"] < 1e-6
    assert all(g.abs().max() > 0 for g in theirs[1])  # gradients reach x_img, y_txt and curv


def test_cli(tmp_path):
    "`python -m meru_nb.bench geometry` writes the JSON and prints the table (fresh-process runs are covered above)."
    out = tmp_path / "sub" / "bench.json"
    cmd = [sys.executable, "-m", "meru_nb.bench", "geometry", "--out", str(out), "--sizes", "8",
           "--compare-up-to", "8", "--dim", "16", "--repeats", "2", "--warmup", "1", "--no-memory", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "| B |" in proc.stdout
    check_results(json.loads(out.read_text()), [8], [], memory=False)


def test_cli_requires_out():
    "The command line refuses to run without a place for the results."
    with pytest.raises(SystemExit):
        bench.main(["geometry"])


def test_cli_data_benchmark(tmp_path):
    "`python -m meru_nb.bench data` writes the loader throughput JSON for a tiny run."
    import json
    from meru_nb.bench import main
    assert main(["data", "--out", str(tmp_path / "data.json"), "--samples", "64", "--workers", "0", "--batch", "16"]) == 0
    rows = json.loads((tmp_path / "data.json").read_text())
    assert "jpeg" in json.dumps(rows) and "builtin 32px" in json.dumps(rows)
