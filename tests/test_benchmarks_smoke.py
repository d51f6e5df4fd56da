"""The benchmarks folder from the normal test run: the micro-benchmarks run once each
(``--benchmark-disable``), and ``plexhpc bench`` explains itself when the folder is absent
(an installed wheel has no ``benchmarks/``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plexhpc.cli import BENCHMARKS_ENV, BenchmarksMissing, benchmarks_dir, import_benchmarks

ROOT = Path(__file__).resolve().parent.parent
MICRO = ROOT / "benchmarks" / "micro"


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.pop(BENCHMARKS_ENV, None)
    env.pop("PYTEST_ADDOPTS", None)
    # this checkout's plexhpc, whatever the current directory
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.mark.timeout(120)
def test_micro_benchmarks_run_once_each():
    job = subprocess.run([sys.executable, "-m", "pytest", str(MICRO), "-q", "-rA",
                          "--benchmark-disable", "-p", "no:cacheprovider"],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=110)
    out = job.stdout + job.stderr
    assert job.returncode == 0, out[-4000:]
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) > 0, out[-4000:]
    ran = {line.split("::")[0].rsplit("/", 1)[-1] for line in out.splitlines()
           if line.startswith("PASSED ")}
    assert ran == {p.name for p in MICRO.glob("test_*.py")}, ran


def test_benchmarks_dir_is_next_to_the_package(monkeypatch):
    monkeypatch.delenv(BENCHMARKS_ENV, raising=False)
    assert benchmarks_dir() == ROOT / "benchmarks"
    monkeypatch.setenv(BENCHMARKS_ENV, str(ROOT / "elsewhere"))
    assert benchmarks_dir() == ROOT / "elsewhere"


def test_import_benchmarks_without_the_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(BenchmarksMissing) as info:
        import_benchmarks(tmp_path / "benchmarks")
    msg = str(info.value)
    assert str(tmp_path / "benchmarks") in msg
    assert "ship with the source checkout" in msg and "pip install -e '.[test]'" in msg


@pytest.mark.timeout(60)
def test_plexhpc_bench_without_benchmarks_exits_2_before_launching(tmp_path):
    # a launcher that fails: had it been called, the exit status would be 1, not 2
    env = _env(**{BENCHMARKS_ENV: str(tmp_path / "benchmarks"), "PLEXHPC_MPIEXEC": "false"})
    job = subprocess.run([sys.executable, "-m", "plexhpc", "bench", "collectives", "-n", "2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50)
    assert job.returncode == 2, job
    assert "ship with the source checkout" in job.stderr
    assert "git clone" in job.stderr and "pip install -e '.[test]'" in job.stderr
    assert "plexhpc bench NAME" in job.stderr
    assert job.stdout == ""
