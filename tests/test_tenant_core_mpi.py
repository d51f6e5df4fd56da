"""Issue 10, part 2: the tenant walls of the core, tested from the attacker's side.
Tenant globex (B) goes after acme's (A) actors; before, B could read and change them by
id, take their names, stop, watch and link to them, claim the system tenant, end the job
and answer other actors' asks with a made-up token."""

import pytest

from conftest import mpirun, SCENARIOS

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def r():
    from conftest import scenario_result
    return scenario_result("tenant_core", 2)


def test_another_tenants_actor_reads_as_missing_by_id_and_by_name(r):
    wa, pb = r["ids"]
    assert wa.startswith("$acme/")  # a tenant's named actor lives in its namespace
    assert r["b_by_id"] == "ActorNotFound"
    assert r["b_by_name"] == "ActorNotFound"
    assert r["b_actor_by_id"] == ["err", "ActorNotFound"]  # from B's own actor, rank 1
    assert r["a_reads"] == 100  # B's cast to A's wallet changed nothing


def test_names_are_per_tenant_and_cannot_be_taken_from_others_or_the_system(r):
    other_id, b_reads, a_reads = r["b_wallet"]
    assert other_id and b_reads == 0 and a_reads == 100
    assert r["system_svc"] is True


def test_b_cannot_stop_watch_or_link_to_as_actors(r):
    assert r["a_after_b_stop"] == 100
    assert r["b_monitor"] == "ok"  # the monitor is accepted, and fires at once:
    assert r["b_downs"] == [[r["ids"][0], "noproc"]]  # as for a missing actor
    assert r["b_link"] == "err"


def test_the_system_tenant_cannot_be_claimed(r):
    assert r["claim_default"] == "InvalidMessage"
    assert r["namespace_only"] == "InvalidMessage"


def test_capabilities_cover_shutdown_monitor_link_and_metrics(r):
    assert r["nocaps"] == {"shutdown": "CapabilityDenied", "monitor": "CapabilityDenied",
                           "link": "CapabilityDenied", "metrics_of": "CapabilityDenied"}
    assert r["tenant_shutdown"] == ["err", "CapabilityDenied"]
    assert r["exit_code"] == 0


def test_reply_tokens_cannot_be_made_up_borrowed_or_used_twice(r):
    assert r["forged"] == "InvalidMessage"
    assert r["others_token"] == "InvalidMessage"
    assert r["own_token"] == "ok" and r["waiter_got"] == "real"
    assert r["token_twice"] == "InvalidMessage"


def test_an_unnamed_durable_actor_of_a_later_launch_starts_empty(tmp_path):
    env = {"PLEXHPC_STATE_DIR": str(tmp_path / "state")}
    first = mpirun(2, [str(SCENARIOS / "tenant_core.py"), "durable-first"], env=env,
                   timeout=120)
    assert first.returncode == 0, first
    second = mpirun(2, [str(SCENARIOS / "tenant_core.py"), "durable-second"], env=env,
                    timeout=120)
    assert second.returncode == 0, second
    wid, n = first.result()["first"]
    wid2, balance = second.result()["second"]
    assert wid == wid2 and n == 7  # the same id comes back in the next launch...
    assert balance == 0            # ...for an actor that must not get the old state
