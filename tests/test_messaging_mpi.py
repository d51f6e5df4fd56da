"""Actors messaging across 2 and 4 ranks: asks, sends, groups, timers, errors, spawn."""

import pytest

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180)]


@pytest.fixture(scope="module", params=[2, 4], ids=["2ranks", "4ranks"])
def result(request):
    from conftest import scenario_result
    return request.param, scenario_result("messaging", request.param)


def test_ask_reaches_every_rank_from_the_driver(result):
    n, r = result
    assert [w["rank"] for w in r["whoami"]] == list(range(n))
    assert len({w["pid"] for w in r["whoami"]}) == n  # really different processes
    assert r["by_id"] == f"p{n - 1}@{n - 1}"


def test_handlers_ask_across_ranks_in_both_directions(result):
    n, r = result
    expected = {f"{a}->{b}": b for a in range(n) for b in range(n) if a != b}
    assert r["relay"] == expected


def test_asking_yourself_is_refused_not_a_hang(result):
    _, r = result
    assert r["self_ask"][0] == "InvalidMessage"  # arrives as itself


def test_process_groups_are_seen_identically_from_every_rank(result):
    n, r = result
    everyone = [f"p{k}@{k}" for k in range(n)]
    assert r["members"] == [everyone] * n
    assert r["first"] == ["p0@0"] * n
    assert r["rank_group"] == [f"p{n - 1}@{n - 1}"]
    assert r["pg_broadcast"] == n
    assert r["notes_after_broadcast"] == [1] * n


def test_send_after_fires_in_deadline_order(result):
    _, r = result
    assert r["ticks"] == [0, 20, 40, 60]


def test_sends_are_ordered_before_a_later_ask(result):
    _, r = result
    assert r["notes_after_sends"] == 51  # 1 from the group broadcast + 50 sends


def test_unknown_op_gets_the_reference_error_reply(result):
    _, r = result
    assert r["unknown"] == {"error": "Unknown message type: no_such_op"}


def test_handler_exception_names_type_message_and_rank_then_restarts(result):
    n, r = result
    c = r["crash"]
    assert c["type"] == "RemoteError" and c["remote_type"] == "RuntimeError"
    assert c["rank"] == n - 1 and c["is_runtime"]
    assert "counter crashed on purpose" in c["msg"] and f"rank {n - 1}" in c["msg"]
    assert r["after_restart"] == 5  # restarted from init: state reset to args.start
    assert r["boom"]["remote_type"] == "ValueError" and "kaboom" in r["boom"]["msg"]


def test_missing_actors_raise_actor_not_found(result):
    n, r = result
    assert r["missing_name"] == "ActorNotFound"
    assert r["missing_id"][0] == "ActorNotFound" and f"ghost@{n - 1}" in r["missing_id"][1]
    assert r["bad_rank"] == "ActorNotFound"


def test_timeout_names_op_and_timeout(result):
    _, r = result
    t = r["timeout"]
    assert t["type"] == "AskTimeout" and t["is_timeout"]
    assert t["op"] == "sleep_ms" and t["timeout_ms"] == 100
    assert "sleep_ms" in t["msg"] and "100 ms" in t["msg"]


def test_call_cycle_ends_in_a_timeout_not_a_hang(result):
    _, r = result
    assert r["cycle"]["is_timeout"], r["cycle"]
    assert r["cycle"]["seconds"] < 2.5
    assert r["cycle_actors_alive"] == ["leaf", "leaf"]


def test_bad_payloads_are_refused_with_clear_errors(result):
    _, r = result
    assert r["payload_not_dict"] == "InvalidMessage"
    assert r["missing_arg"][0] == "InvalidMessage" and "['x']" in r["missing_arg"][1]
    assert r["needs_ok"] == 8  # extras ignored, defaults apply


def test_numpy_arrays_cross_ranks_intact(result):
    _, r = result
    assert r["array_ok"] is True


def test_spawn_on_a_chosen_rank_resolve_by_name_and_stop(result):
    n, r = result
    assert r["spawned"] == f"spawned@{n - 1}"
    assert r["spawned_by_name_from_other_rank"] == 10
    assert r["driver_spawn"][0].endswith("@0") and r["driver_spawn"][1] == 8
    assert r["after_stop"] == "ActorNotFound"
    assert r["dup_name"] == "InvalidMessage"  # (a ValueError)
    assert r["spawn_bad_init"] == ["RemoteError"]
