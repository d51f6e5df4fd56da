"""The CLI and the job's life as a user drives it: run, bad configs, signals, shutdown,
restart intensity, start-up failure, a killed rank. Every job runs with a timeout and
must leave no process behind."""

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import SCENARIOS, mpirun, plexhpc_cli, run

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180)]


def leftovers(marker: str) -> list:
    """Processes whose command line mentions ``marker`` (should be none after a job)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid():
                found.append(p.info)
        except psutil.Error:
            pass
    return found


@pytest.fixture
def serve_app(tmp_path):
    """A serve-forever app in tmp_path whose actors write rank*.ready when up."""
    text = (SCENARIOS / "serve_app.toml").read_text().replace("@DIR@", str(tmp_path))
    app = tmp_path / "serve_app.toml"
    app.write_text(text)
    shutil.copy(SCENARIOS / "lib_actors.py", tmp_path / "lib_actors.py")
    return app


def wait_ready(directory: Path, n: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list(directory.glob("rank*.ready"))
        if len(files) == n:
            time.sleep(0.3)  # let the start-up handshake finish
            return {int(f.read_text().split()[0]): int(f.read_text().split()[1]) for f in files}
        time.sleep(0.05)
    raise AssertionError(f"job did not start within {timeout}s")


def test_main_job_runs_across_two_ranks_and_prints_json():
    job = plexhpc_cli(["run", "examples/hello/app.toml", "-n", "2", "--json"], timeout=120)
    assert job.returncode == 0, job
    out = json.loads(job.stdout.strip().splitlines()[-1])
    assert out["pinger"] == "pinger@0" and out["greeter"] == "greeter@1"
    assert out["first_reply"]["rank"] == 1 and out["first_reply"]["text"] == "hello, rank 0!"
    assert out["casts_seen_by_greeter"] == 1000 and out["greeter_stats"]["greeted"] == 1001


def test_bad_config_exits_2_before_launching(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[supervisor.children]]\nname = "x"\nclass = "nowhere:X"\nrank = 9\n')
    t0 = time.monotonic()
    job = plexhpc_cli(["run", str(bad), "-n", "2"], timeout=60)
    assert job.returncode == 2, job
    assert str(bad) in job.stderr and "supervisor.children[0] (x).class" in job.stderr
    assert "cannot import module 'nowhere'" in job.stderr
    assert "mpiexec" not in job.stderr and time.monotonic() - t0 < 20


@pytest.mark.parametrize("content, needle", [
    (None, "file not found"),
    ("[supervisor\n", "not valid TOML"),
    ('[[supervisor.children]]\nname = "p"\nclass = "lib_actors:Probe"\nrank = 5\n',
     "rank 5 is out of range: the job has 2 rank(s)"),
    ('[supervisor]\nstratgy = "one_for_one"\n', "unknown key 'stratgy'"),
])
def test_bad_config_under_mpiexec_exits_2_on_every_rank_with_one_message(tmp_path, content,
                                                                          needle):
    path = tmp_path / "app.toml"
    if content is not None:
        path.write_text(content)
    job = mpirun(2, ["-m", "plexhpc", "run", str(path)], timeout=60)
    assert job.returncode == 2, job
    assert job.stderr.count("invalid app config") == 1, job
    assert needle in job.stderr and str(path) in job.stderr


def test_init_failure_stops_the_start_with_status_1_naming_the_actor():
    job = mpirun(2, ["-m", "plexhpc", "run", str(SCENARIOS / "badinit_app.toml")], timeout=60)
    assert job.returncode == 1, job
    assert "'bad' on rank 1 failed to start" in job.stderr
    assert "init refuses on purpose" in job.stderr


@pytest.mark.parametrize("target", ["rank0", "rank1"])
def test_sigterm_to_any_rank_shuts_every_rank_down_cleanly(serve_app, tmp_path, target):
    def on_start(proc):
        pids = wait_ready(tmp_path, 2)
        os.kill(pids[int(target[-1])], signal.SIGTERM)
    job = mpirun(2, ["-m", "plexhpc", "run", str(serve_app)], timeout=60, on_start=on_start)
    assert job.returncode == 0, job
    assert "Traceback" not in job.stderr, job
    assert leftovers(str(serve_app)) == []


def test_ctrl_c_to_the_cli_reaches_every_rank_once(serve_app, tmp_path):
    def on_start(proc):
        wait_ready(tmp_path, 2)
        proc.send_signal(signal.SIGINT)
    job = run([sys.executable, "-m", "plexhpc", "run", str(serve_app), "-n", "2"],
              timeout=60, on_start=on_start)
    assert job.returncode == 0, job
    assert leftovers(str(serve_app)) == []


def test_an_actor_can_shut_the_job_down(serve_app, tmp_path):
    script = tmp_path / "shut.py"
    script.write_text(
        "import plexhpc, sys, time\n"
        "with plexhpc.start(sys.argv[1]) as node:\n"
        "    if node.is_driver:\n"
        "        node.send('m1', 'shutdown_job')\n"
        "        sys.stdout.write(f'CLOSED {node.wait_closed(10)}\\n'); sys.stdout.flush()\n"
        "sys.stdout.write(f'SERVED {node.rank} {node.exit_code}\\n'); sys.stdout.flush()\n")
    t0 = time.monotonic()
    job = mpirun(2, [str(script), str(serve_app)], timeout=60)
    assert job.returncode == 0, job
    assert "SERVED 1 0" in job.stdout and "SERVED 0 0" in job.stdout
    assert "CLOSED True" in job.stdout
    assert time.monotonic() - t0 < 9  # the driver's wait ended with the job


def test_shutdown_drains_messages_in_flight_then_stops_in_reverse_start_order(tmp_path):
    out = tmp_path / "sink.txt"
    job = mpirun(2, [str(SCENARIOS / "drain.py"), str(out), "20000"], timeout=90)
    assert job.returncode == 0, job
    lines = [line.split() for line in out.read_text().splitlines()]
    # stopped in reverse start order, after draining every cast sent to them
    assert [aid for aid, _, _ in lines] == ["later2@1", "later1@1", "sink@1"]
    assert lines[-1][1:] == ["20000", "shutdown"]


def test_restart_intensity_exceeded_fails_the_job_on_every_rank():
    job = mpirun(2, [str(SCENARIOS / "intensity.py"), str(SCENARIOS / "intensity_app.toml")],
                 timeout=90)
    assert job.returncode != 0, job
    assert "restart intensity exceeded (4 restarts within 30 s, max_restarts=3)" in job.stderr
    assert job.stderr.count("JobFailed") >= 2  # both ranks' scripts fail loudly


def test_driver_exception_stops_every_rank():
    job = mpirun(2, [str(SCENARIOS / "driver_fails.py")], timeout=60)
    assert job.returncode != 0, job
    assert "driver failed on purpose" in job.stderr
    assert "JobFailed: the job stopped with status 1 on rank 1" in job.stderr


def test_a_killed_rank_ends_the_job_instead_of_hanging(serve_app, tmp_path):
    def on_start(proc):
        pids = wait_ready(tmp_path, 2)
        os.kill(pids[1], signal.SIGKILL)
    t0 = time.monotonic()
    job = mpirun(2, ["-m", "plexhpc", "run", str(serve_app)], timeout=90, on_start=on_start)
    assert job.returncode != 0, job
    assert time.monotonic() - t0 < 60
    assert leftovers(str(serve_app)) == []


def test_actor_benchmark_smoke_prints_every_key():
    job = run([sys.executable, "-m", "plexhpc", "bench", "actors", "-n", "2", "--quick",
               "--json"], timeout=150)
    assert job.returncode == 0, job
    res = json.loads(job.stdout.strip().splitlines()[-1])
    for key in ["local_ask_p50_us", "local_ask_p99_us", "remote_ask_p50_us",
                "remote_ask_p99_us", "remote_ask_256k_p50_us", "local_send_per_s",
                "remote_send_per_s", "idle_cpu_pct", "first_ask_after_idle_us",
                "spawn_100k_s", "actor_mem_bytes", "mpi_pingpong_p50_us",
                "pkl5_pingpong_256k_p50_us", "remote_ask_vs_mpi", "remote_ask_256k_vs_pkl5"]:
        assert isinstance(res[key], (int, float)) and res[key] > 0, key
    assert res["sends_delivered"] is True and res["ranks"] == 2


@pytest.mark.parametrize("ranks", [1, 2])
def test_one_process_runs_many_jobs_in_a_row(ranks):
    """Each job frees the communicators and the window it made: 900 jobs in one process
    (MPICH has 2,048 context ids; three leaked per job ran out after ~680)."""
    from conftest import scenario_result
    r = scenario_result("many_jobs", ranks, timeout=240)
    assert r["jobs"] == 900
    assert r["answers"] == (900 if ranks > 1 else 0)
