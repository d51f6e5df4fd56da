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
    assert kind in ("InvalidMessage", "UnknownLease", "ValueError", "StateError"), (
        kind, message)
    assert words in message, message
    n = list(overflow).index(case) // 2
    assert overflow[f"alive_after_{case}"] == [n, n]
