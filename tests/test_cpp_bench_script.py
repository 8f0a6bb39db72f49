"""examples/cpp/bench_step.py: the rounds alternate a bench_step run and the Python learner's steps, and the
table's ratios are the rounds' ratios (a stand-in program prints known C++ times)."""
import importlib.util
import os
import stat

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script():
    spec = importlib.util.spec_from_file_location("bench_step_script", os.path.join(ROOT, "examples", "cpp",
                                                                                    "bench_step.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_bench(tmp_path, body):
    path = tmp_path / "bench_step"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_table_holds_each_round_and_the_ratios(tmp_path, capsys, monkeypatch):
    mod = load_script()
    # Round r (1, 2, 3) of the stand-in prints C++ NACA r ms at batch 32.
    count = tmp_path / "count"
    bench = fake_bench(tmp_path, f'n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}\n'
                                 'echo "threads 1"\n'
                                 'echo "batch 32  C++ NACA step $n ms  C++ BP step 3 ms"\n'
                                 'echo "batch 256  C++ NACA step 10 ms  C++ BP step 20 ms"\n')
    py_ms = {32: [6.0, 4.0, 2.0], 256: [10.0, 10.0, 30.0]}
    calls = []

    def fake_python_step_ms(batch, steps):
        calls.append((batch, steps))
        return py_ms[batch][sum(1 for b, _ in calls if b == batch) - 1]

    monkeypatch.setattr(mod, "python_step_ms", fake_python_step_ms)
    assert mod.main(["--bench", bench, "--rounds", "3", "--steps", "7"]) == 0
    out = capsys.readouterr().out
    assert calls == [(32, 7), (256, 7)] * 3
    # Per-round ratios 6/1, 4/2, 2/3 and 3/1, 3/2, 3/3: their median and range, not a ratio of medians.
    assert "| 32 | 2.00 (1.00-3.00) | 4.00 (2.00-6.00) | 3.00 (3.00-3.00) | 2.00x (0.67-6.00) | 1.50x (1.00-3.00) |" \
        in out
    assert "| 256 | 10.00 (10.00-10.00) | 10.00 (10.00-30.00) | 20.00 (20.00-20.00) | 1.00x (1.00-3.00) | " \
           "2.00x (2.00-2.00) |" in out


def test_python_step_is_timed():
    mod = load_script()
    ms = mod.python_step_ms(4, 2)
    assert 0 < ms < 10_000


def test_a_failing_or_silent_bench_is_an_error(tmp_path):
    mod = load_script()
    with pytest.raises(RuntimeError, match="failed \\(3\\)"):
        mod.cpp_round(fake_bench(tmp_path, "echo oops; exit 3\n"), 1)
    with pytest.raises(RuntimeError, match="no line for batch \\[256\\]"):
        mod.cpp_round(fake_bench(tmp_path, 'echo "batch 32  C++ NACA step 1 ms  C++ BP step 3 ms"\n'), 1)


def test_missing_bench_is_a_usage_error(tmp_path, capsys):
    mod = load_script()
    with pytest.raises(SystemExit) as e:
        mod.main(["--bench", str(tmp_path / "absent")])
    assert e.value.code == 2
    assert "argument --bench: expected the bench_step program" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mod.main(["--rounds", "0"])
    assert "argument --rounds: expected an integer >= 1, got '0'" in capsys.readouterr().err
