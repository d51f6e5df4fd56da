"""Transport guarantees between two ranks."""

import pytest

from conftest import scenario_result

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def result():
    return scenario_result("transport", 2, timeout=100)


def test_small_and_large_messages_from_one_sender_keep_their_order(result):
    assert result["mixed_order"] and result["mixed_sums"]


def test_a_flood_larger_than_one_batch_arrives_complete_and_in_order(result):
    assert result["flood_order"]


def test_an_unpicklable_payload_fails_only_its_own_message(result):
    bad = result["unpicklable"]["bad"]
    assert bad[0] == "InvalidMessage" and "cannot be serialized" in bad[1]
    assert "'echo'" in bad[1]
    assert result["unpicklable"]["good"] == "fine"
