"""No request can hang the job (issue 10): faults in the hub loop of one rank.

- a message that pickles on its sender but does not unpickle on its receiver fails only
  itself: the asker gets InvalidMessage naming the op, the target and the rank, a cast
  is dropped with a log line, and the rest of its batch is delivered;
- an exception while delivering one envelope loses nothing else of its batch;
- an exception that escapes the loop anyway ends the job on every rank, nonzero, with a
  message naming the failing rank and the cause, within seconds.
"""

import time

import pytest

from conftest import SCENARIOS, mpirun

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(150)]

CAUSE = "fault injected into the hub loop on purpose"


@pytest.fixture(scope="module")
def decode():
    job = mpirun(2, [str(SCENARIOS / "hub_fault_decode.py")], timeout=100)
    assert job.returncode == 0, job
    return job.result()


def test_a_reply_that_cannot_be_unpickled_fails_only_its_ask(decode):
    cls, msg = decode["driver_bad_reply"]
    assert cls == "InvalidMessage", decode
    assert "'bad'" in msg and "replier@1" in msg and "rank 0" in msg
    assert "could not be unpickled" in msg and "TypeError" in msg
    assert decode["after_driver"] == "fine"


def test_a_handler_asking_gets_the_same_clear_error(decode):
    cls, msg = decode["handler_bad_reply"]
    assert cls == "InvalidMessage" and "could not be unpickled" in msg and "'bad'" in msg


def test_a_bad_reply_does_not_lose_the_good_cast_in_its_batch(decode):
    cls, msg = decode["mixed_reply"]
    assert cls == "InvalidMessage" and "'bad_after_cast'" in msg
    assert decode["mixer_seen"] == [99]


def test_an_ask_whose_payload_cannot_be_unpickled_is_answered_with_an_error(decode):
    cls, msg = decode["bad_payload_ask"]
    assert cls == "InvalidMessage", decode
    assert "'echo'" in msg and "rank 1" in msg and "could not be unpickled" in msg


def test_a_cast_that_cannot_be_unpickled_is_dropped_and_nothing_else(decode):
    assert decode["cast_seen"] == [8]


def test_a_batch_mixing_bad_envelopes_with_good_ones_delivers_the_good_ones(decode):
    mix = decode["mix"]
    assert mix["bad_ask"][0] == "InvalidMessage" and "'echo'" in mix["bad_ask"][1]
    assert mix["seen"] == [8, 1, 3]
    assert decode["still_up"] == "fine"


def test_a_failed_delivery_loses_only_its_own_envelope():
    job = mpirun(2, [str(SCENARIOS / "hub_fault_loop.py"), "deliver"], timeout=100)
    assert job.returncode == 0, job
    out = job.result()
    mix = out["mix"]
    assert mix["poison_ask"][0] == "RemoteError", out
    assert "'poison'" in mix["poison_ask"][1] and "delivery fault injected" in mix["poison_ask"][1]
    assert mix["seen"] == [1, 3]
    assert out["still_up"] == [1, 3]
    assert "delivery fault injected on purpose" in job.stderr


@pytest.mark.parametrize("mode, failing", [("loop", 1), ("loop0", 0), ("run", 1)])
def test_a_failing_loop_ends_every_rank_nonzero_naming_the_rank_and_cause(mode, failing):
    t0 = time.monotonic()
    job = mpirun(2, [str(SCENARIOS / "hub_fault_loop.py"), mode], timeout=90)
    took = time.monotonic() - t0
    assert job.returncode != 0, job
    assert took < 60, job
    # the failing rank logs its traceback; the peer says which rank failed and why
    assert "Traceback" in job.stderr and CAUSE in job.stderr, job
    assert f"the node's loop failed" in job.stderr, job
    peer = 1 - failing
    assert (f"[r{peer}] ERROR plexhpc.node: rank {peer}: job failed: rank {failing}: "
            f"RuntimeError: {CAUSE}; shutting down") in job.stderr, job
    if mode != "run":
        # both ranks' scripts end with JobFailed naming the rank and the cause
        assert job.stderr.count(f"JobFailed: the job stopped with status 1") == 2, job
        assert job.stderr.count("ENDED rank") == 2, job
        # the driver's call ended with the job, not with its own 20 s timeout
        out = job.result()
        assert out["armed"] == "armed"
        cls, msg = out["after"]
        assert cls in ("JobFailed", "NodeClosed"), out
        assert f"rank {failing}" in msg and CAUSE in msg, out
        assert out["seconds"] < 15, out


def test_a_failed_rank_that_cannot_close_is_ended_by_its_watchdog():
    t0 = time.monotonic()
    job = mpirun(2, [str(SCENARIOS / "hub_fault_loop.py"), "hang"], timeout=90,
                 env={"PLEXHPC_FATAL_EXIT_S": "3"})
    took = time.monotonic() - t0
    assert job.returncode != 0, job
    assert "the rank did not close within 3 s: exiting now" in job.stderr, job
    assert f"job failed: rank 1: RuntimeError: {CAUSE}" in job.stderr, job
    assert took < 45, job
