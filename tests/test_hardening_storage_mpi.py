"""Issue 10 across 2 ranks: no malformed state request kills the state rank."""

import pytest

from conftest import scenario_result

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def overflow():
    return scenario_result("hard_storage_overflow", 2, timeout=120)


@pytest.mark.parametrize("case, words", [
    ("ack_huge_seq", "not leased"),
    ("ttl_1e300", "ttl_ms"),
    ("list_limit_1e30", "limit"),
    ("dead_letters_2_64", "limit"),
    ("receive_visibility_huge", "visibility_ms"),
])
def test_overflowing_inputs_get_a_clear_error_and_the_state_rank_lives(overflow, case,
                                                                        words):
    kind, message = overflow[case]
    assert kind in ("InvalidMessage", "UnknownLease", "ValueError"), (
        kind, message)
    assert words in message, message
    n = list(overflow).index(case) // 2
    assert overflow[f"alive_after_{case}"] == [n, n]


def test_a_lost_or_other_key_stops_the_start_instead_of_starting_empty(tmp_path):
    """The key rules end to end: a missing key is not made anew while signed state
    exists, another key is refused, and with the right key back nothing was lost."""
    import os

    from conftest import SCENARIOS, mpirun
    key = tmp_path / "keys" / "state.key"
    env = {"PLEXHPC_STATE_DIR": str(tmp_path / "state"), "PLEXHPC_STATE_KEY_FILE": str(key)}
    script = str(SCENARIOS / "hard_storage_keys.py")

    first = mpirun(2, [script, "add"], env=env, timeout=60)
    assert first.returncode == 0, first
    assert first.result() == {"value": 5}
    saved = key.read_bytes()

    key.unlink()
    lost = mpirun(2, [script, "get"], env=env, timeout=60)
    assert lost.returncode != 0, lost
    assert f"the state key file {key} does not exist" in lost.stderr, lost
    assert not key.exists()

    key.write_bytes(os.urandom(32))
    os.chmod(key, 0o600)
    other = mpirun(2, [script, "get"], env=env, timeout=60)
    assert other.returncode != 0, other
    assert "signed with another key" in other.stderr, other

    key.write_bytes(saved)
    back = mpirun(2, [script, "get"], env=env, timeout=60)
    assert back.returncode == 0, back
    assert back.result() == {"value": 5}
