"""Collectives at 1, 2 and 4 ranks: the size-agnostic matrix against numpy, and failures
that must not hang (a rank's uncaught exception, a rank that never arrives)."""

import pytest

from conftest import SCENARIOS, mpirun

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(300)]


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_every_op_dtype_shape_and_root_matches_numpy(ranks):
    job = mpirun(ranks, [str(SCENARIOS / "collectives_matrix.py")], timeout=280,
                 env={"PLEXHPC_COLLECTIVE_TIMEOUT_S": "30"})
    assert job.returncode == 0, job
    res = job.result()
    assert res["size"] == ranks
    assert res["failures"] == [], "\n".join(res["failures"][:30])
    assert res["checked"] > 1000 * ranks ** 0.5


def test_an_uncaught_exception_on_one_rank_stops_the_others(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from mpi4py import MPI\n"
        "from plexhpc import collectives as C\n"
        "C.allreduce(np.ones(2))\n"
        "if MPI.COMM_WORLD.rank == 1:\n"
        "    raise RuntimeError('rank 1 lost its data')\n"
        "try:\n"
        "    C.allreduce(np.ones(2), timeout=60)\n"
        "except C.CollectiveAborted as exc:\n"
        "    sys.stdout.write(f'ABORTED rank={exc.rank} {exc}\\n'); sys.stdout.flush()\n"
        "    sys.exit(3)\n")
    job = mpirun(2, [str(script)], timeout=60)
    assert "ABORTED rank=1" in job.stdout and "rank 1 lost its data" in job.stdout, job
    assert job.returncode != 0


def test_collectives_benchmark_smoke_prints_every_key():
    import json
    import sys

    from conftest import run
    job = run([sys.executable, "-m", "plexhpc", "bench", "collectives", "-n", "2", "--quick",
               "--json"], timeout=200)
    assert job.returncode == 0, job
    res = json.loads(job.stdout.strip().splitlines()[-1])
    ops = {(r["op"], r["bytes"]) for r in res["rows"]}
    for op in ["broadcast", "reduce", "allreduce", "scatter", "gather", "allgather"]:
        for nbytes in [8, 8192, 1 << 20, 8 << 20]:
            assert (op, nbytes) in ops
    assert ("barrier", 0) in ops
    for row in res["rows"]:
        assert row["plexhpc_p50_us"] > 0 and row["mpi4py_p50_us"] > 0 and row["ratio"] > 0
    assert {"plexhpc_p50_us", "one_buffer_p50_us", "pickle_p50_us"} <= set(res["pytree"])
    assert {"plexhpc_p50_us", "builtin_p50_us"} <= set(res["user_op"])
    assert res["jit_compile_s"] >= 0 and res["ranks"] == 2
