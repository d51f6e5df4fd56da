"""The parallel-inference app and `plexhpc bench shards`, at tiny sizes."""

import json
import sys

import pytest

from conftest import run
from plexhpc.apps.inference import MLP, checksum, make_request_input

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(240)]


def test_bench_shards_cli_writes_json_markdown_and_png(tmp_path):
    out = tmp_path / "report"
    job = run([sys.executable, "-m", "plexhpc", "bench", "shards", "-n", "2", "--shards",
               "1,2,4", "--requests", "8", "--model", "small", "--lanes", "2", "--json",
               "--report", str(out)], timeout=200)
    assert job.returncode == 0, job
    res = json.loads(job.stdout.strip().splitlines()[-1])
    rows = res["rows"]
    assert [r["shards"] for r in rows] == [1, 2, 4]
    for r in rows:
        assert r["error_count"] == 0 and r["throughput_rps"] > 0
        assert r["compute_time_ms"] > 0 and 0 < r["core_efficiency_pct"] <= 100.5
        assert r["ranks"] == min(r["shards"], 2)
        # strong scaling: 8 requests in total, one per shard per round (rounded up)
        assert r["total_requests"] == -(-8 // r["shards"]) * r["shards"]
    assert rows[0]["parallel_efficiency_pct"] == 100.0
    assert "[" in job.stderr and "done" in job.stderr  # the progress bar
    assert (out / "shards.json").exists() and (out / "shards.md").exists()
    assert (out / "shards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "shards.md").read_text()
    assert "core eff %" in md and "plexhpc bench shards -n 2" in md


def test_worker_replies_carry_the_real_checksum(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(
        "import json, numpy as np, plexhpc\n"
        "from plexhpc.apps.inference import make_request_input\n"
        "cfg = {'supervisor': {'children': []}}\n"
        "with plexhpc.start(cfg) as node:\n"
        "    if node.is_driver:\n"
        "        node.create_shard_group({'group_id': 'g', 'shard_count': 2,\n"
        "            'actor_type': 'plexhpc.apps.inference.actors:InferenceWorker',\n"
        "            'initial_state': {'model_type': 'small', 'seed': 3}})\n"
        "        x = make_request_input('req-1')\n"
        "        r = node.scatter_gather({'group_id': 'g', 'query': {'op': 'infer',\n"
        "            'request_id': 'req-1', 'input': x}})\n"
        "        m = node.scatter_gather({'group_id': 'g', 'query': {'op': 'get_metrics'},\n"
        "            'aggregation': 'sum'})\n"
        "        print('RESULT ' + json.dumps({'sums': [s['checksum'] for s in r['result']],\n"
        "            'ranks': [s['rank'] for s in r['result']], 'served': m['result']['served']}),\n"
        "            flush=True)\n")
    from conftest import mpirun
    job = mpirun(2, [str(script)], timeout=120)
    assert job.returncode == 0, job
    res = job.result()
    expected = checksum(MLP("small", seed=3).forward(make_request_input("req-1")))
    # Each rank runs the forward pass with its own BLAS threading, so the float32 sums
    # agree to rounding, not to the bit: compare with a tolerance.
    assert res["sums"] == [pytest.approx(expected, rel=1e-5, abs=1e-4)] * 2
    assert res["ranks"] == [0, 1]
    assert res["served"] == 2


def test_benchmark_pool_mode_leases_workers_concurrently(tmp_path):
    script = tmp_path / "p.py"
    script.write_text(
        "import json, plexhpc\n"
        "cfg = {'supervisor': {'children': [{'name': 'bench', 'rank': 0,\n"
        "    'class': 'plexhpc.apps.inference.actors:BenchmarkActor'}]}}\n"
        "with plexhpc.start(cfg) as node:\n"
        "    if node.is_driver:\n"
        "        r = node.ask('bench', 'pool_run', {'size': 1, 'max_size': 3,\n"
        "            'requests': 24, 'clients': 3, 'model_type': 'small'}, 120000)\n"
        "        print('RESULT ' + json.dumps(r, default=str), flush=True)\n")
    from conftest import mpirun
    job = mpirun(2, [str(script)], timeout=120)
    assert job.returncode == 0, job
    r = job.result()
    assert r["completed"] == 24 and r["failed"] == 0 and r["throughput_rps"] > 0
    assert r["compute_time_ms"] > 0 and r["avg_exec_ms"] > 0
    assert r["pool_stats"]["checkouts"] == 24 and r["pool_stats"]["grown"] >= 1


@pytest.mark.parametrize("mode", ["collective", "pool"])
def test_bench_shards_other_modes(mode):
    job = run([sys.executable, "-m", "plexhpc", "bench", "shards", "-n", "2", "--mode", mode,
               "--shards", "4", "--requests", "16", "--model", "small"], timeout=200)
    assert job.returncode == 0, job
    res = json.loads(job.stdout.strip().splitlines()[-1])
    assert res["mode"] == mode and res["ranks"] == 2
    if mode == "collective":
        for name in ("broadcast", "barrier", "reduce", "allreduce"):
            assert res[name]["shards"] == 4 and res[name]["p50_ms"] > 0
        assert res["mpi4py_allreduce_2xf64_us"] > 0
    else:
        assert res["completed"] == 16 and res["failed"] == 0
