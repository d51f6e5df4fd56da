"""KV, TupleSpace, channels, request contexts, capabilities, monitors, links and the
GenEvent / GenFSM / Workflow behaviors, across 2 ranks (actors on rank 1, the stores
on rank 0), and on 1 rank where everything is local."""

import pytest

from conftest import SCENARIOS, mpirun, scenario_result

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(150)]


@pytest.fixture(scope="module", params=[(2, 0), (1, 0), (2, 1)],
                ids=["2-ranks", "1-rank", "2-ranks-stores-on-rank-1"])
def r(request):
    ranks, state_rank = request.param
    job = mpirun(ranks, [str(SCENARIOS / "state_prims.py"), str(state_rank)], timeout=120)
    assert job.returncode == 0, job
    return job.result()


def test_kv_operations(r):
    assert r["kv_get"] == {"x": [1, 2]}
    assert r["kv_list"] == ["a", "ab"]
    assert r["kv_cas"] == [True, False, 4, True, False]
    assert r["kv_incr"] == [1, 6]
    assert r["kv_delete"] == [True, False, "gone"]
    assert r["kv_ttl_before"] == 1 and r["kv_ttl_after"] == "expired"


def test_kv_is_private_to_the_actor_type_and_tenant(r):
    assert r["kv_same_type_other_rank"] == {"x": [1, 2]}
    assert r["kv_other_type"] == [None, []]
    assert r["kv_other_tenant"] == [None, [], False, False]
    assert r["kv_after_attacks"] == {"x": [1, 2]}  # nothing the other tenant did landed
    assert r["kv_shared"] == ["shared-value", None]


def test_kv_bad_input_is_refused_clearly(r):
    empty, ttl, incr = r["kv_bad"]
    assert empty[0] == "InvalidMessage" and "non-empty str" in empty[1]
    assert ttl[0] == "ValueError" and "ttl_ms must be > 0" in ttl[1]
    assert incr[0] == "StateError"  # the value under "a" is a dict, not an int


def test_tuplespace(r):
    assert r["ts_read"] == ["job", 1, "a"]
    assert r["ts_read_all"] == [["job", 1, "a"], ["job", 2, "b"]]
    assert r["ts_take"] == [["job", 2, "b"], None, 1]
    assert r["ts_other_tenant"] == [[], None, 0]
    kind, seconds = r["ts_timeout"]
    assert kind == "StateTimeout" and 0.1 <= seconds < 2
    assert r["ts_woken"] == ["wake", 42]  # blocking take woken by a write elsewhere


def test_channels_at_least_once(r):
    a, b = r["ch_idem"]
    assert a == b
    assert r["ch_depth"] == {"ready": 4, "leased": 0, "dead": 0}
    assert r["ch_first"] == [True, {"n": 0}, 1]
    assert r["ch_ack_twice"] == "UnknownLease"
    assert r["ch_nack_redelivers"] == [True, 2]
    assert r["ch_expired_redelivers"] == [True, 3]
    assert r["ch_other_tenant"] == [None, {"ready": 0, "leased": 0, "dead": 0}, "UnknownLease"]
    assert r["ch_dead"] == [{"ready": 1, "leased": 0, "dead": 1}, 1]
    assert r["ch_woken"] == {"v": 1}
    assert r["ch_timeout_none"] is None
    same, count, stale_ack, stale_nack, ack, depth = r["ch_stale"]
    assert same and count == 2
    assert stale_ack == stale_nack == "UnknownLease"
    assert ack is None and depth == {"ready": 0, "leased": 0, "dead": 0}


def test_context_propagates_and_cannot_be_forged(r):
    assert r["ctx"] == ["acme", "prod", "alice"]
    assert r["ctx_forwarded"] == ["globex", "prod", "bob"]
    assert r["ctx_default"] == ["default", "default", "system"]
    assert r["bad_ctx"] == "InvalidMessage"


def test_capabilities_are_enforced_with_a_clear_error(r):
    ok, ts, ch, spawn = r["caps"]
    assert ok is None
    for got, cap in ((ts, "ts"), (ch, "channel"), (spawn, "spawn")):
        assert got[0] == "CapabilityDenied"
        assert f"may not use {cap!r}" in got[1] and "declared capabilities are ['kv']" in got[1]


def test_every_capability_is_enforced_and_spawn_cannot_widen_them(r):
    timers, pools, child_kv = r["caps_more"]
    assert timers[0] == "CapabilityDenied" and "'timers'" in timers[1]
    assert pools[0] == "CapabilityDenied" and "'pools'" in pools[1]
    assert child_kv[0] == "CapabilityDenied" and "'kv'" in child_kv[1]


def test_shards_and_fan_outs_keep_the_context_and_the_creators_capabilities(r):
    route_ctx, sg_ctx, many_ctx = r["shard_ctx"]
    assert route_ctx[0] == sg_ctx[0] == many_ctx[0] == "acme"
    assert r["shard_caps"][0] == "CapabilityDenied"  # the shard could not use kv either
    for kind in r["shard_reserved"]:
        assert kind == "InvalidMessage"


def test_a_tenant_cannot_stop_another_tenants_actor(r):
    assert r["stop_other_tenant"][0] == "acme"


def test_runtime_signals_cannot_be_forged(r):
    from_actor, from_driver = r["reserved"]
    assert from_actor[0] == "InvalidMessage" and "reserved for the runtime" in from_actor[1]
    assert from_driver == "InvalidMessage"


def test_unbounded_timeouts_are_refused(r):
    for got in r["bad_timeouts"]:  # InvalidMessage is a ValueError
        assert got[0] == "InvalidMessage" and "milliseconds" in got[1]


def test_process_groups_are_tenant_scoped(r):
    mine, other_tenant, shared = r["pg"]
    assert mine == ["store@" + mine[0].split("@")[1]]
    assert other_tenant == []
    assert shared == ["store0@0"]  # default-context services are visible to every tenant


def test_monitors_and_links(r):
    assert r["down"] == [[True, True, True]]          # one __DOWN__ (the demonitored ref: none)
    assert r["exit"] == [[True, True]]                # __EXIT__ on the crash
    assert r["victim_restarted"] == "pong"
    assert r["down_on_stop"] == ["normal"]
    assert r["exits_after_stop"] == 1                 # a normal stop sends no __EXIT__
    assert r["monitor_noproc"] == ["noproc"]
    assert r["link_self"] == ["InvalidMessage", True]
    assert r["linked_crash"] and "LinkedExit" in r["linked_crash"][0]
    assert r["exits_after_unlinked_crash"] == 0
    assert r["monitor_unknown_name"] == ["noproc"]
    assert r["exit_boom_signals"] == ["boom"]
    assert r["demonitor_fired"] is False


def test_gen_event_runs_every_handler_and_forwards_to_subscribers(r):
    stats, got = r["event"]
    assert stats == {"count": 2, "log": ["x", "y"]}
    assert got == ["x", "y"]


def test_gen_fsm_rejects_illegal_transitions_with_the_state(r):
    first, jump, trans, start, start_again, jump2, final = r["fsm"]
    assert first == "idle"
    assert jump["status"] == "rejected" and jump["state"] == "idle"
    assert trans["status"] == "rejected" and "allowed states are ['busy']" in trans["error"]
    assert start == {"status": "ok", "state": "busy"}
    assert start_again["status"] == "rejected" and start_again["state"] == "busy"
    assert jump2 == {"status": "ok"}
    assert final == {"status": "ok", "state": "done", "transitions": 2}


def test_workflow_query_during_run_and_resume_after_crash(r):
    assert r["wf_query_during_run"] == {"status": "running", "progress": 1}
    # another tenant can neither query nor signal a run that is not its own
    assert r["wf_query_other_tenant"] == "Rejected"
    assert r["wf_signal_other_tenant"] == "Rejected"
    assert r["wf_second_run"] == "Rejected"  # an InvalidMessage
    # the run acted for the context that started it (the system), and the refused
    # signal left no note
    assert r["wf_result"] == {"status": "completed", "done": [1, 1], "tenant": "default",
                              "notes": []}
    assert r["wf_crash"] == "RemoteError"
    status, ran = r["wf_resumed"]
    assert status == {"status": "completed", "progress": 3}
    # steps 0 and 1 ran once in this run (2 in total with the first run); step 2 once
    assert ran == [2, 2, 1]


def test_workflow_signals_are_replayed_and_an_interrupted_caller_is_told(r):
    assert r["wf_interrupted_caller"] == ["RemoteError", True]
    st = r["wf_signal_replayed"]
    assert st["status"] == "completed"
    assert st["result"]["notes"] == ["hello"]  # the signal survived the crash
    assert r["wf_run_id_reused"] == "Rejected"  # refused; the actor lives on
    assert r["wf_alive_after_reuse"] == "idle"


def test_channel_is_at_least_once_under_consumer_crashes():
    r = scenario_result("channel_crash", 2, timeout=90)
    assert r["unique_ids"]
    assert r["crashes"] == 4
    assert r["acked_sorted"] == list(range(40))   # every task acked exactly once
    assert r["redelivered"] == [3, 11, 12, 25]     # the crashed ones came back
    assert r["depth"] == {"ready": 0, "leased": 0, "dead": 0}
