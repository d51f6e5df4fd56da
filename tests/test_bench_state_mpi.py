"""`plexhpc bench state` at a smoke size: every figure present, ratios from the same run."""

import json
import sys

import pytest

from conftest import run

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(200)]

KEYS = ("kv_put_per_s", "kv_get_per_s", "ts_write_take_per_s",
        "ts_write_take_per_s_other_rank", "channel_send_ack_per_s",
        "durable_msg_overhead_us_interval_1", "durable_msg_overhead_us_interval_10",
        "sqlite_insert_per_s", "channel_vs_sqlite_insert")


def test_bench_state_reports_every_figure(tmp_path):
    job = run([sys.executable, "-m", "plexhpc", "bench", "state", "-n", "2", "--quick",
               "--json", "--report", str(tmp_path)], timeout=180)
    assert job.returncode == 0, job
    res = json.loads(job.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert key in res, key
    for key in KEYS[:5] + ("sqlite_insert_per_s",):
        assert res[key] > 0, key
    # the median of per-pair ratios: close to the ratio of the medians
    assert res["channel_vs_sqlite_insert"] == pytest.approx(
        res["channel_send_ack_per_s"] / res["sqlite_insert_per_s"], rel=0.5)
    assert set(res["targets"]) == {"durable_msg_overhead_us_interval_1",
                                   "channel_vs_sqlite_insert"}
    assert (tmp_path / "state.json").exists() and (tmp_path / "state.md").exists()
