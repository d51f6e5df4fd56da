"""The pytest-mpi suite (tests/mpi) under mpiexec on 1, 2 and 4 ranks, and its fixtures'
promise that a test failing on the driver fails on every rank without a hang.

Each run is ``mpiexec -n N python -m pytest --with-mpi tests/mpi`` in its own process
group with a timeout (conftest.run); every rank also writes a JUnit report of its own,
so the checks do not depend on how mpiexec interleaves the ranks' output.
"""

import re
import shlex
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import MPIEXEC, run

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180)]

_SUMMARY = re.compile(r"((?:\d+ [a-z]+(?:, )?)+) in \d+(?:\.\d+)?s")


def run_suite(n: int, target: str, tmp_path):
    """Run pytest under mpiexec on ``n`` ranks; each rank writes rank-R.xml in tmp_path."""
    pytest_cmd = [sys.executable, "-m", "pytest", "--with-mpi", target, "-q",
                  "-p", "no:cacheprovider"]
    junit = shlex.quote(str(tmp_path)) + '/rank-"$PMI_RANK".xml'
    shell = "exec " + " ".join(map(shlex.quote, pytest_cmd)) + f" --junitxml={junit}"
    job = run([MPIEXEC, "-n", str(n), "sh", "-c", shell], timeout=150)
    reports = {}
    for path in sorted(tmp_path.glob("rank-*.xml")):
        suite = ET.parse(path).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        reports[int(path.stem.split("-")[1])] = {
            k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    summaries = [dict((kind, int(count)) for count, kind in
                      (part.split(" ") for part in m.group(1).split(", ")))
                 for m in _SUMMARY.finditer(job.stdout)]
    return job, reports, summaries


@pytest.mark.parametrize("n", [1, 2, 4], ids=["1rank", "2ranks", "4ranks"])
def test_the_pytest_mpi_suite_passes_on_every_rank(n, tmp_path):
    job, reports, summaries = run_suite(n, "tests/mpi", tmp_path)
    assert job.returncode == 0, job  # 5 would be "no tests collected"
    assert summaries and all(s.get("passed", 0) > 0 for s in summaries), job
    assert not any(s.get("failed") or s.get("error") or s.get("errors") for s in summaries), job
    assert sorted(reports) == list(range(n)), job
    assert all(r["tests"] > 0 and r["failures"] == 0 and r["errors"] == 0
               for r in reports.values()), (reports, job)
    assert len({r["tests"] for r in reports.values()}) == 1, reports  # the same tests ran


def test_a_test_failing_on_the_driver_fails_on_every_rank(tmp_path):
    # selfcheck_failures.py: an assert failing and an uncaught RemoteError, then a pass
    job, reports, summaries = run_suite(2, "tests/mpi/selfcheck_failures.py", tmp_path)
    assert job.returncode == 1, job
    assert sorted(reports) == [0, 1], job
    for rank, r in reports.items():
        assert (r["tests"], r["failures"], r["errors"]) == (3, 2, 0), (rank, reports, job)
    assert "failed on the driver rank 0" in job.stdout, job
    assert all(s == {"failed": 2, "passed": 1} for s in summaries) and summaries, job
