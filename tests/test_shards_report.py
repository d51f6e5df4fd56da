"""Unit tests of the ``plexhpc bench shards`` report: rows, formulas, files (no MPI)."""

from __future__ import annotations

import json
import math
import sys

import pytest

from plexhpc.cli import import_benchmarks

import_benchmarks()  # the checkout's benchmarks/ folder, importable as ``benchmarks``

from benchmarks.shards_report import (PLOT_HINT, ROW_KEYS, finish_rows,  # noqa: E402
                                      make_row, markdown, write_reports)

LAT_1 = [10.0, 12.0, 11.0, 30.0, 9.0]      # 5 successful requests, 1 shard
COMP_1 = [8.0, 9.0, 8.5, 20.0, 7.5]
LAT_2 = [6.0, 7.0, 5.0, 8.0, 6.5, 7.5, 5.5, 9.0]   # 8 successful requests, 2 shards
COMP_2 = [4.0, 5.0, 3.5, 6.0, 4.5, 5.0, 4.0, 6.0]


def row1(**over):
    kw = dict(shards=1, batch_size=4, kb_per_request=2.5, latencies_ms=LAT_1,
              compute_ms=COMP_1, wall_time_ms=50.0, error_count=1, ranks=2, cores_in_use=2)
    kw.update(over)
    return make_row(**kw)


def row2(**over):
    kw = dict(shards=2, batch_size=4, kb_per_request=2.5, latencies_ms=LAT_2,
              compute_ms=COMP_2, wall_time_ms=40.0, error_count=0, ranks=3, cores_in_use=3)
    kw.update(over)
    return make_row(**kw)


def nearest_rank(samples, q):
    """Nearest-rank percentile straight from its definition."""
    data = sorted(samples)
    for v in data:
        if sum(1 for x in data if x <= v) * 100 >= q * len(data):
            return v
    raise AssertionError("unreachable")


# --- make_row ---------------------------------------------------------------------------

def test_row_keys_order():
    assert list(ROW_KEYS) == [
        "shards", "batch_size", "total_requests", "kb_per_request", "throughput_rps",
        "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "wall_time_ms",
        "compute_time_ms", "coordination_time_ms", "compute_pct", "granularity_ratio",
        "parallel_efficiency_pct", "error_count", "ranks", "core_efficiency_pct"]
    assert list(row1()) == list(ROW_KEYS)


def test_make_row_formulas():
    r = row1()
    comp, lat, wall = sum(COMP_1), sum(LAT_1), 50.0
    assert r["shards"] == 1 and r["batch_size"] == 4 and r["kb_per_request"] == 2.5
    assert r["total_requests"] == 6
    assert r["error_count"] == 1 and r["ranks"] == 2
    assert r["wall_time_ms"] == wall
    assert r["throughput_rps"] == pytest.approx(5 / (wall / 1000))       # 100 req/s
    assert r["throughput_rps"] == pytest.approx(100.0)
    assert r["compute_time_ms"] == pytest.approx(comp) == pytest.approx(53.0)
    assert r["coordination_time_ms"] == pytest.approx(lat - comp) == pytest.approx(19.0)
    assert r["compute_pct"] == pytest.approx(comp / wall * 100) == pytest.approx(106.0)
    assert r["granularity_ratio"] == pytest.approx(comp / (lat - comp))
    assert r["core_efficiency_pct"] == pytest.approx(comp / (2 * wall) * 100)
    assert r["core_efficiency_pct"] == pytest.approx(53.0)
    assert r["parallel_efficiency_pct"] is None


def test_compute_pct_can_exceed_100_but_core_efficiency_is_per_core():
    r = row2(wall_time_ms=30.0)
    assert r["compute_pct"] == pytest.approx(sum(COMP_2) / 30.0 * 100)
    assert r["compute_pct"] > 100
    assert r["core_efficiency_pct"] == pytest.approx(sum(COMP_2) / (3 * 30.0) * 100)
    assert r["core_efficiency_pct"] < 100


def test_percentiles_nearest_rank():
    r = row1()
    assert r["p50_latency_ms"] == 11.0      # sorted: 9 10 11 12 30
    assert r["p95_latency_ms"] == 30.0
    assert r["p99_latency_ms"] == 30.0
    lat = [float(i) for i in range(1, 101)]     # 1..100
    r = row1(latencies_ms=lat, compute_ms=[0.5] * 100)
    assert (r["p50_latency_ms"], r["p95_latency_ms"], r["p99_latency_ms"]) == (50.0, 95.0, 99.0)
    lat = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0, 5.5, 3.5, 8.0, 7.0, 0.5]
    r = row1(latencies_ms=lat, compute_ms=[0.0] * len(lat))
    for q in (50, 95, 99):
        assert r[f"p{q}_latency_ms"] == nearest_rank(lat, q)
    assert isinstance(row1(latencies_ms=[1, 2], compute_ms=[0, 0])["p50_latency_ms"], float)


def test_no_successful_requests():
    r = row1(latencies_ms=[], compute_ms=[], error_count=3)
    assert r["total_requests"] == 3
    assert r["throughput_rps"] == 0
    assert r["p50_latency_ms"] == r["p95_latency_ms"] == r["p99_latency_ms"] == 0
    assert r["compute_time_ms"] == 0 and r["coordination_time_ms"] == 0
    assert r["granularity_ratio"] is None


def test_coordination_clamped_and_granularity_none():
    # compute reported larger than latency (clock skew): coordination clamps at 0
    r = row1(latencies_ms=[5.0, 5.0], compute_ms=[6.0, 5.5])
    assert r["coordination_time_ms"] == 0.0
    assert r["granularity_ratio"] is None
    assert r["compute_time_ms"] == pytest.approx(11.5)
    # exactly equal: zero coordination, too
    r = row1(latencies_ms=[5.0, 4.0], compute_ms=[5.0, 4.0])
    assert r["coordination_time_ms"] == 0.0 and r["granularity_ratio"] is None


@pytest.mark.parametrize("over, message", [
    (dict(shards=0), "shards must be an integer >= 1"),
    (dict(shards=1.5), "shards must be an integer >= 1"),
    (dict(shards=True), "shards must be an integer >= 1"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(error_count=-1), "error_count must be an integer >= 0"),
    (dict(ranks=0), "ranks must be an integer >= 1"),
    (dict(cores_in_use=0), "cores_in_use must be an integer >= 1"),
    (dict(cores_in_use=3), "cores_in_use must be <= ranks"),
    (dict(kb_per_request=-0.1), "kb_per_request must be a finite number >= 0"),
    (dict(kb_per_request="2"), "kb_per_request must be a finite number >= 0"),
    (dict(wall_time_ms=0), "wall_time_ms must be a finite number > 0"),
    (dict(wall_time_ms=-5.0), "wall_time_ms must be a finite number > 0"),
    (dict(wall_time_ms=math.inf), "wall_time_ms must be a finite number > 0"),
    (dict(latencies_ms=[1.0, -1.0, 2.0, 3.0, 4.0]),
     r"latencies_ms\[1\] must be a finite number >= 0"),
    (dict(latencies_ms=[1.0, math.nan, 2.0, 3.0, 4.0]),
     r"latencies_ms\[1\] must be a finite number >= 0"),
    (dict(compute_ms=[1.0, 1.0, 1.0, 1.0, -0.5]),
     r"compute_ms\[4\] must be a finite number >= 0"),
    (dict(latencies_ms=None), "latencies_ms must be a list of finite numbers"),
    (dict(compute_ms="12"), "compute_ms must be a list of finite numbers"),
    (dict(compute_ms=[1.0, 2.0]), "must have equal lengths.*got 5 and 2"),
])
def test_validation_errors(over, message):
    with pytest.raises(ValueError, match=message):
        row1(**over)


# --- finish_rows ------------------------------------------------------------------------

def test_parallel_efficiency():
    raw = [row1(), row2()]
    rows = finish_rows(raw)
    assert raw[0]["parallel_efficiency_pct"] is None          # inputs untouched
    assert rows[0]["parallel_efficiency_pct"] == 100.0
    # row 2: 8 / 0.040 = 200 req/s; linear from 100 req/s at 1 shard -> 200 at 2 shards
    assert rows[1]["throughput_rps"] == 200.0
    assert rows[1]["parallel_efficiency_pct"] == 100.0
    rows = finish_rows([row1(), row2(wall_time_ms=64.0)])     # 125 req/s
    expected = (8 / 0.064) / (100.0 * 2 / 1) * 100
    assert rows[1]["parallel_efficiency_pct"] == round(expected, 2) == 62.5
    # a base row with more than one shard, and a four-shard row
    rows = finish_rows([row2(), row1(shards=4, wall_time_ms=20.0)])  # 200, then 250 req/s
    assert rows[0]["parallel_efficiency_pct"] == 100.0
    assert rows[1]["parallel_efficiency_pct"] == round(250 / (200 * 4 / 2) * 100, 2) == 62.5


def test_finish_rows_rounds_floats_and_keeps_ints():
    rows = finish_rows([row1(wall_time_ms=30.0), row2(wall_time_ms=70.0)])
    for r in rows:
        assert list(r) == list(ROW_KEYS)
        for k, v in r.items():
            if isinstance(v, float):
                assert v == round(v, 2), (k, v)
        for k in ("shards", "batch_size", "total_requests", "error_count", "ranks"):
            assert type(r[k]) is int
    assert rows[0]["throughput_rps"] == round(5 / 0.030, 2) == 166.67
    assert rows[0]["compute_pct"] == round(53.0 / 30.0 * 100, 2)
    assert rows[0]["granularity_ratio"] == round(53.0 / 19.0, 2)
    # efficiency from unrounded throughputs
    assert rows[1]["parallel_efficiency_pct"] == round(
        (8 / 0.070) / ((5 / 0.030) * 2) * 100, 2)


def test_finish_rows_edge_cases():
    assert finish_rows([]) == []
    rows = finish_rows([row1(latencies_ms=[], compute_ms=[]), row2()])
    assert rows[0]["parallel_efficiency_pct"] is None
    assert rows[1]["parallel_efficiency_pct"] is None
    bad = row1()
    del bad["ranks"]
    with pytest.raises(ValueError, match="row 0 must have every key of ROW_KEYS"):
        finish_rows([bad])


# --- markdown and files -----------------------------------------------------------------

HEADER = ("| shards | batch | total requests | KB/req | req/s | wall ms | p50 | p95 | p99 | "
          "compute ms | coord ms | comp % | granularity | eff % | core eff % | ranks | errors |")
COMMAND = "plexhpc bench shards --shards 1,2 --requests 64"


def test_markdown():
    rows = finish_rows([row1(), row2(latencies_ms=[1.0] * 8, compute_ms=[1.0] * 8)])
    md = markdown(rows, title="Shard scaling", command=COMMAND)
    lines = md.splitlines()
    assert "## Shard scaling" in lines
    assert HEADER in lines
    i = lines.index(HEADER)
    assert lines[i + 1].count("---") == 17
    assert lines[i + 2] == ("| 1 | 4 | 6 | 2.50 | 100.00 | 50.00 | 11.00 | 30.00 | 30.00 | "
                            "53.00 | 19.00 | 106.00 | 2.79 | 100.00 | 53.00 | 2 | 1 |")
    assert "| n/a |" in lines[i + 3]                 # granularity None
    assert "Formulas" in md
    for phrase in ("req/s", "nearest-rank percentile", "compute ms / wall ms * 100",
                   "compute ms / coord ms", "linear speed-up in shards",
                   "compute ms / (cores in use * wall ms) * 100", "min(ranks, free cores)",
                   "clamped at 0"):
        assert phrase in md
    assert md.index("Formulas") > md.index(HEADER)
    assert COMMAND in md and md.index(COMMAND) > md.index("Formulas")


def test_write_reports(tmp_path):
    rows = finish_rows([row1(), row2(), row1(shards=4, wall_time_ms=20.0, ranks=5,
                                             cores_in_use=4)])
    out = tmp_path / "deep" / "reports"
    meta = {"host": "test", "free_cores": 4}
    paths = write_reports(rows, out, title="Shard scaling", command=COMMAND, meta=meta)
    assert set(paths) == {"json", "markdown", "png"}
    for p in paths.values():
        assert (out / p.rsplit("/", 1)[-1]).is_file()
    assert sorted(x.name for x in out.iterdir()) == ["shards.json", "shards.md", "shards.png"]

    data = json.loads((out / "shards.json").read_text())
    assert data["title"] == "Shard scaling" and data["command"] == COMMAND
    assert data["meta"] == meta
    assert data["rows"] == rows
    assert all(list(r) == list(ROW_KEYS) for r in data["rows"])

    md = (out / "shards.md").read_text()
    assert HEADER in md and "Formulas" in md and COMMAND in md

    png = (out / "shards.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 1024


def test_write_reports_single_row_and_unfinished(tmp_path):
    # one shard count only, efficiencies not filled in: still a plot, no warnings
    paths = write_reports([row1()], tmp_path, title="one", command="c")
    assert (tmp_path / "shards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "shards.json").read_text())["meta"] is None
    assert paths["png"] == str(tmp_path / "shards.png")
    with pytest.raises(ValueError, match="at least one row"):
        write_reports([], tmp_path, title="none", command="c")


def test_write_reports_without_matplotlib_skips_the_chart(tmp_path, monkeypatch, capsys):
    # matplotlib is the optional [plot] extra: without it the report is still written
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    paths = write_reports([row1()], tmp_path, title="one", command="c")
    assert paths["png"] is None
    assert sorted(x.name for x in tmp_path.iterdir()) == ["shards.json", "shards.md"]
    err = capsys.readouterr().err
    assert "warning" in err and "matplotlib" in err and PLOT_HINT in err
    assert PLOT_HINT == "pip install 'plexhpc[plot]'"
