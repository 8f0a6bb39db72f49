"""The pipeline schedules' simulation (``distributed.schedules``) against closed forms and a hand-worked
schedule, and the pipeline benchmark's quick run (``torch_plugin.bench.pipeline``)."""
import pytest
import torch.distributed as dist

from torch_plugin.distributed import schedules


@pytest.mark.parametrize("S", [1, 2, 3, 8])
@pytest.mark.parametrize("M", [1, 2, 5, 16])
def test_balanced_stages_follow_the_closed_forms(S, M):
    """Equal stages: forward only (M + S - 1) t, holding one microbatch; GPipe and 1F1B (M + S - 1)(f + b),
    GPipe stashing M microbatches on every stage, 1F1B min(S - s, M) on stage s."""
    t, f, b = [1.0] * S, [1.0] * S, [2.0] * S
    assert schedules.forward_only(t, M) == (M + S - 1, [1] * S)
    assert schedules.gpipe(f, b, M) == (3 * (M + S - 1), [M] * S)
    assert schedules.one_f_one_b(f, b, M) == (3 * (M + S - 1), [min(S - s, M) for s in range(S)])
    assert schedules.gpipe(f, b, M, update=[0.5] * S)[0] == 3 * (M + S - 1) + 0.5
    assert schedules.utilization(t, M, M + S - 1) == pytest.approx(M / (M + S - 1))


def test_unequal_stages_by_hand():
    """Stages 1, 3, 1 (forward; backward twice that), 4 microbatches. Forward only: the slow stage sets the
    pace, 5 + 3 * 3 = 14. GPipe: forwards end at 14, backwards take 10 + 3 * 6 = 28 more: 42. 1F1B (worked
    out by hand, stage by stage): stage 0 ends with B3 over [37, 39]; it holds 3, 2 and 1 microbatches."""
    assert schedules.forward_only([1, 3, 1], 4) == (14, [1, 1, 1])
    assert schedules.gpipe([1, 3, 1], [2, 6, 2], 4)[0] == 42
    assert schedules.one_f_one_b([1, 3, 1], [2, 6, 2], 4) == (39, [3, 2, 1])


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_the_pipeline_benchmark_quick_run(tmp_path):
    from torch_plugin.bench import pipeline

    assert pipeline.main(["--quick", "--out", str(tmp_path)]) == 0
    import json

    res = json.loads((tmp_path / "pipeline.json").read_text())
    g = res["grid"]
    rows = res["simulation"]
    assert {(r["depth"], r["stages"], r["microbatches"]) for r in rows} == {
        (d, s, m) for d in g["depths"] for s in g["stages"] if s <= d + 1 for m in g["microbatches"]}
    for r in rows:
        t, M = r["naca_stage_ms"], r["microbatches"]
        assert len(t) == r["stages"] and r["naca_pipe_ms"] == pytest.approx(sum(t) + (M - 1) * max(t))
        assert r["naca_util"] == pytest.approx(M * sum(t) / (r["stages"] * r["naca_pipe_ms"])) and r["naca_util"] <= 1
        assert r["onef1b_mem_mb"] <= r["gpipe_mem_mb"] * (1 + 1e-9)
        assert r["naca_speedup"] == pytest.approx(r["naca_1proc_ms"] / r["naca_pipe_ms"])
    assert all(r["bp_saved"] > 0 and r["naca"] > 0 for r in res["stages"])
    ranks = res["ranks"]["rows"]
    assert [r["microbatches"] for r in ranks] == g["ranks"]["microbatches"]
    assert all(r[k] > 0 for r in ranks for k in ("one_1thread", "one_2threads", "pipe_atomic", "pipe"))
    md = (tmp_path / "pipeline.md").read_text()
    assert "Simulated, L = 4" in md and "Measured: 2 gloo ranks" in md
