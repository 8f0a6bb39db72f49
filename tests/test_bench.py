"""The benchmark suite's quick mode runs on CPU and writes sane Markdown and JSON
(every ratio finite and > 0, every section and key present). No timing assertions."""
import json
import math

import pytest

from torch_plugin import bench
from torch_plugin.bench import depth as depth_section
from torch_plugin.bench import report
from torch_plugin.bench.__main__ import main


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_quick_cpu_writes_sane_json(tmp_path, capsys):
    assert main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "benchmarks.md").read_text()
    assert capsys.readouterr().out == md
    for title in ("1. One training step", "2. Ops", "3. Spiking", "4. Scaling", "5. Depth"):
        assert title in md
    res = json.loads((tmp_path / "benchmarks.json").read_text())
    assert set(bench.SECTIONS) <= set(res)
    meta = res["meta"]
    assert meta["quick"] and meta["device"] == "cpu"
    assert meta["bounds"]["bandwidth"] > 0 and meta["bounds"]["peak_flops_float32"] > 0

    def positive(row, key):
        v = row[key]
        assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (key, row)

    models = {r["model"] for r in res["step"]}
    assert len(models) == 2 and len(res["step"]) == 4
    for r in res["step"]:
        for key in ("naca_ms", "bp_ms", "speedup"):
            positive(r, key)
        if r["naca_peak_bytes"] and r["bp_peak_bytes"]:
            positive(r, "memory_ratio")
    ops = {r["op"] for r in res["ops"]}
    assert {"naca_hidden_update_", "plasticity_update_", "naca_conv_update_", "modulation",
            "neuromodulator"} <= ops
    for r in res["ops"]:
        for key in ("op_ms", "vs_reference", "bound_s", "x_of_bound"):
            positive(r, key)
        if "vs_eager" in r:
            positive(r, "vs_eager")
    assert res["snn_notes"]
    assert {"lif_forward", "naca_snn_update_", "naca_snn_chain_update_", "stdp_update_"} <= {r["op"] for r in res["snn"]}
    for r in res["snn"]:
        for key in ("op_ms", "reference_ms", "vs_reference"):
            positive(r, key)
    for r in res["scaling"]:
        for key in ("naca_ms", "bp_ms", "speedup"):
            positive(r, key)
    depth = res["depth"]
    assert [r["depth"] for r in depth["mlp"]] == [1, 2, 4] and depth["conv"] and depth["snn"]
    for r in depth["mlp"] + depth["conv"] + depth["snn"]:
        for key in depth_section.METHODS:
            if r[key] is not None:  # (None: the profiler's memory events unavailable)
                positive(r, key)
            positive(r, key + "_resident")
    assert (tmp_path / "depth.png").exists() or not _has_matplotlib()
    t = depth["targets"][0]
    assert t["deepest"] == 4 and t["growth_met"], t  # the streamed step's peak does not grow with depth


def test_sections_subset(tmp_path):
    assert main(["--quick", "--sections", "ops", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "benchmarks.json").read_text())
    assert "ops" in res and "step" not in res and "scaling" not in res


def test_sections_run_in_the_order_given_and_are_written_after_each(tmp_path, monkeypatch):
    # A run cut short (a time limit on a lent GPU) keeps the sections it finished: the files
    # are rewritten after each section, in the order the sections were asked for.
    seen = []
    real_write = report.to_markdown

    def spy(res):
        seen.append([k for k in res if k in bench.SECTIONS])
        return real_write(res)

    monkeypatch.setattr(report, "to_markdown", spy)
    assert main(["--quick", "--sections", "scaling,step", "--out", str(tmp_path)]) == 0
    assert seen[:2] == [["scaling"], ["scaling", "step"]]
    res = json.loads((tmp_path / "benchmarks.json").read_text())
    assert set(res) & set(bench.SECTIONS) == {"scaling", "step"}


def test_run_rejects_an_unknown_section():
    with pytest.raises(ValueError, match="unknown bench section 'nope'"):
        bench.run("cpu", quick=True, sections=["nope"])
