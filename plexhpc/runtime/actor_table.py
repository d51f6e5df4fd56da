"""The actors of one rank: creating them (config children, spawns), stopping them, and the
one teardown every ending instance goes through.

An actor is an :class:`~plexhpc.runtime.cell.ActorCell` in ``cells`` (id -> cell). A spawn
on another rank is a system ask to that rank's table (``spawn``, ``spawn_many``); a stop
of another rank's actor likewise (``stop``). Names of spawned actors are registered on
every rank when they start and dropped when they stop.
"""

from __future__ import annotations

import itertools

from .. import errors as E
from ..actors import facets as facets_
from ..actors.spec import spec_of
from ..config import resolve_class
from ..context import DEFAULT_CTX, may_act_on, tenant_of
from ..log import get_logger
from .cell import STARTING, STOPPED, STOPPING, ActorCell
from .envelope import ASK, KIND, OP
from .routing import tenant_actor_id

__all__ = ["ActorTable", "narrow", "same_tenant"]

log = get_logger("node")

RESTART_TYPES = ("permanent", "transient", "temporary")


def narrow(declared, parent):
    """The capabilities of a spawned actor: what its class declares, never more than its
    parent has (None: unrestricted)."""
    if parent is None:
        return declared
    if declared is None:
        return parent
    return declared & parent


def same_tenant(ctx, target) -> bool:
    """May a caller acting in ``ctx`` act on ``target`` (stop it, link to it)? Within its
    tenant, or from the default (system) context."""
    return may_act_on(ctx, tenant_of(target.home_ctx))


class ActorTable:
    """Create, stop and tear down this rank's actors. ``rt`` is the node: the table uses
    its executor, router, system ops and the OTP parts (links, groups, supervision)."""

    def __init__(self, rt):
        self.rt = rt
        self.rank = rt.rank
        self.size = rt.size
        self.cells: dict = {}
        self._seq = itertools.count()
        self._spawn_seq = itertools.count(1)
        ops = rt.system
        ops.register("spawn", self._on_spawn, asks=True, owner="actor table",
                     payload="(class ref, name, args, restart, ctx, caps) -> actor id")
        ops.register("spawn_many", self._on_spawn, asks=True, owner="actor table",
                     payload="(class ref, count, args, ctx, caps) -> [actor id]")
        ops.register("stop", self._on_stop, asks=True, owner="actor table",
                     payload="(reason, ctx), to=actor id -> None")
        ops.register("name", lambda src, d: rt.router.register(*d), owner="actor table",
                     payload="(name, actor id, tenant or None): a named actor started")
        ops.register("unname", lambda src, d: rt.router.unregister(*d), owner="actor table",
                     payload="(name, actor id, tenant or None): a named actor stopped")

    # ---- cells ---------------------------------------------------------------------

    def in_start_order(self, reverse: bool = False) -> list:
        return sorted(self.cells.values(), key=lambda c: c.seq, reverse=reverse)

    def new_cell(self, aid, name, spec, args, restart, supervised, ctx=None, caps=None,
                 facets=None) -> ActorCell:
        cell = ActorCell(aid, name, spec, args, restart, next(self._seq), supervised)
        cell.home_ctx = cell.ctx = ctx if ctx is not None else DEFAULT_CTX
        cell.caps = caps if caps is not None else spec.capabilities
        fc = facets if facets is not None else (
            facets_.parse_facets(spec.facets, spec.type_name) if spec.facets else None)
        if fc:
            cell.facets = facets_.FacetState(self.durable_key(cell, name, spec), fc)
            if fc.get("virtual_actor") and not cell.facets.eager:
                cell.facets.dormant = True
                self.cells[aid] = cell
                return cell  # no instance until the first message
        cell.inst = spec.new_instance(aid)
        self.cells[aid] = cell
        return cell

    def durable_key(self, cell, name, spec) -> str:
        """Where an actor's durable state is kept. It names the class (another class
        under the same name in a later launch must not be handed this one's state), the
        tenant and namespace of a tenant's actor (tenant B's "wallet" is not tenant A's),
        and, for an actor without a name, this launch: its id (``Cls-N@r``) comes back in
        the next launch for an unrelated actor, which must start empty."""
        tenant = tenant_of(cell.home_ctx)
        who = name if tenant is None else f"{tenant}/{cell.home_ctx[1]}/{name}"
        if name is None:
            who = f"{cell.id}#{self.rt.job_tag}"
        return f"actor:{who}:{spec.type_name}"

    def new_config_child(self, child) -> ActorCell:
        """The cell of config child ``child`` on this rank (its id is ``name@rank``)."""
        return self.new_cell(f"{child.name}@{self.rank}", child.name, spec_of(child.cls),
                             child.args, child.restart, True, child.context,
                             child.capabilities, child.facet_config)

    # ---- classes across ranks ------------------------------------------------------

    @staticmethod
    def class_ref(cls_or_path) -> tuple:
        """How to name a class to another rank: by import path when it has one, else
        pickled by value (a class defined in ``__main__`` or a function)."""
        if isinstance(cls_or_path, str):
            cls = resolve_class(cls_or_path, where="spawn")
        else:
            cls = cls_or_path
            spec_of(cls)
        mod = getattr(cls, "__module__", "__main__")
        if mod != "__main__" and "<locals>" not in cls.__qualname__:
            return ("path", f"{mod}:{cls.__qualname__}", cls)
        import cloudpickle
        return ("pickled", cloudpickle.dumps(cls), cls)

    @staticmethod
    def load_class(ref):
        kind, data = ref[0], ref[1]
        if kind == "path":
            return resolve_class(data, where="spawn")
        import cloudpickle
        return cloudpickle.loads(data)

    # ---- spawning ------------------------------------------------------------------

    def start_spawn(self, ref, name, rank, args, restart, done, ctx=None, caps=None,
                    timeout_ms=30000) -> None:
        """Spawn one actor on ``rank`` (None: here); ``done(True, id)`` after its init."""
        target = self.rank if rank is None else rank
        if not isinstance(target, int) or not 0 <= target < self.size:
            done(False, E.InvalidMessage(f"spawn: rank {rank!r} out of range "
                                         f"0..{self.size - 1}"))
            return
        if restart not in RESTART_TYPES:
            done(False, E.InvalidMessage(f"spawn: restart must be permanent, transient or "
                                         f"temporary, got {restart!r}"))
            return
        if name is not None and (not isinstance(name, str) or not name or "@" in name
                                 or name.startswith("$")):
            done(False, E.InvalidMessage(f"spawn: invalid name {name!r} (non-empty, no '@', "
                                         "not starting with '$')"))
            return
        if name is not None and self.rt.router.holder(name, tenant_of(ctx)) is not None:
            done(False, E.InvalidMessage(f"spawn: the name {name!r} is taken by "
                                         f"{self.rt.router.holder(name, tenant_of(ctx))}"))
            return
        if target == self.rank:
            self.spawn_local(ref[2] if len(ref) > 2 else self.load_class(ref), name, args,
                             restart, done, ctx, caps)
            return
        self.rt.system.ask(target, "spawn", (ref[:2], name, args, restart, ctx, caps), done,
                           timeout_ms)

    def spawn_local(self, cls, name, args, restart, done, ctx=None, caps=None) -> None:
        try:
            spec = spec_of(cls)
        except TypeError as exc:
            done(False, E.InvalidMessage(str(exc)))
            return
        router = self.rt.router
        tenant = tenant_of(ctx)
        if name is not None and router.holder(name, tenant) is not None:
            done(False, E.InvalidMessage(f"spawn: the name {name!r} is taken by "
                                         f"{router.holder(name, tenant)}"))
            return
        if name is not None and tenant is not None:
            aid = tenant_actor_id(tenant, name, self.rank)  # in the tenant's namespace
        else:
            aid = f"{name or f'{cls.__name__}-{next(self._spawn_seq)}'}@{self.rank}"
        try:
            cell = self.new_cell(aid, name, spec, args, restart, True, ctx,
                                 narrow(spec.capabilities, caps))
        except Exception as exc:  # noqa: BLE001 - the class's own __init__ failed
            done(False, E.RemoteError(f"creating {aid} failed: {type(exc).__name__}: {exc}",
                                      remote_type=type(exc).__name__, remote_message=str(exc),
                                      rank=self.rank, actor=aid))
            return
        if name is not None:
            router.register(name, aid, tenant)
            self.rt.system.broadcast("name", (name, aid, tenant))

        def after_init(ok, value):
            if ok:
                done(True, aid)
            else:
                self.finalize_stop(cell, "init failed")
                done(False, value)

        self.rt.executor.queue_init(cell, after_init)

    def start_spawn_many(self, ref, count, rank, args, done, ctx=None, caps=None,
                         timeout_ms=600000) -> None:
        target = self.rank if rank is None else rank
        if not isinstance(target, int) or not 0 <= target < self.size:
            done(False, E.InvalidMessage(f"spawn_many: rank {rank!r} out of range "
                                         f"0..{self.size - 1}"))
            return
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            done(False, E.InvalidMessage(f"spawn_many: count must be an int >= 0, got "
                                         f"{count!r}"))
            return
        if target == self.rank:
            self.spawn_many_local(ref[2] if len(ref) > 2 else self.load_class(ref), count,
                                  args, done, ctx, caps)
            return
        self.rt.system.ask(target, "spawn_many", (ref[:2], count, args, ctx, caps), done,
                           timeout_ms)

    def spawn_many_local(self, cls, count, args, done, ctx=None, caps=None) -> None:
        """Create ``count`` unnamed actors of one class; ``done(True, ids)`` after every
        init succeeded (the first failure is reported and the whole batch stopped)."""
        try:
            spec = spec_of(cls)
        except TypeError as exc:
            done(False, E.InvalidMessage(str(exc)))
            return
        if count == 0:
            done(True, [])
            return
        ids: list = []
        cells: list = []
        state = [count, None]  # [inits outstanding, first failure]

        def after_init(ok, value):
            if not ok and state[1] is None:
                state[1] = value
            state[0] -= 1
            if state[0] == 0:
                if state[1] is None:
                    done(True, ids)
                else:
                    for c in cells:
                        self.stop_actor(c, "spawn_many failed")
                    done(False, state[1])

        caps = narrow(spec.capabilities, caps)
        base, rank, seq = cls.__name__, self.rank, self._spawn_seq
        new_cell, queue_init = self.new_cell, self.rt.executor.queue_init
        for _ in range(count):
            aid = f"{base}-{next(seq)}@{rank}"
            cell = new_cell(aid, None, spec, args, "permanent", True, ctx, caps)
            queue_init(cell, after_init)
            ids.append(aid)
            cells.append(cell)

    def _on_spawn(self, src, data, done, to) -> None:
        ref, *rest = data
        try:
            cls = self.load_class(ref)
        except Exception as exc:  # noqa: BLE001 - reported to the spawner
            done(False, E.InvalidMessage(f"spawn on rank {self.rank}: cannot load the actor "
                                         f"class: {exc}"))
            return
        if len(rest) == 5:
            name, args, restart, ctx, caps = rest
            self.spawn_local(cls, name, args, restart, done, ctx, caps)
        else:
            count, args, ctx, caps = rest
            self.spawn_many_local(cls, count, args, done, ctx, caps)

    # ---- stopping ------------------------------------------------------------------

    def start_stop(self, actor, reason, done, ctx=None) -> None:
        """Stop ``actor`` for a caller acting in ``ctx`` (None: the runtime or a driver).
        A caller acting for a tenant may stop only that tenant's actors."""
        try:
            aid, r = self.rt.router.resolve(actor, tenant_of(ctx))
        except E.PlexError as exc:
            done(False, exc)
            return
        if r != self.rank:
            self.rt.system.ask(r, "stop", (reason, ctx), done, 10000, to=aid)
            return
        cell = self.cells.get(aid)
        if cell is None or cell.status == STOPPED:
            done(False, E.ActorNotFound(f"no actor {aid!r} on rank {self.rank}", actor=aid))
            return
        if not same_tenant(ctx, cell):
            done(False, E.CapabilityDenied(
                f"a caller acting for tenant {ctx[0]!r} cannot stop {aid}, which belongs to "
                f"tenant {cell.home_ctx[0]!r}", capability="spawn"))
            return
        self.stop_actor(cell, reason, done)

    def _on_stop(self, src, data, done, to) -> None:
        reason, ctx = data
        self.start_stop(to, reason, done, ctx)

    def stop_actor(self, cell, reason, done=None) -> None:
        """Stop ``cell`` after its current message: terminate handler, then gone."""
        if done is not None:
            if cell.stop_waiters is None:
                cell.stop_waiters = []
            cell.stop_waiters.append(done)
        if cell.status in (STOPPING, STOPPED):
            return
        cell.status = STOPPING
        cell.stop_reason = reason
        if cell.spec.terminate is not None and cell.inst is not None:
            self.rt.executor.queue_terminate(cell, reason)
        elif cell.running is None:
            self.finalize_stop(cell, reason)

    def teardown(self, cell, reason: str, abnormal: bool, checkpoint: bool) -> None:
        """The one sequence by which an instance ends (stop, halt by its supervisor,
        crash): it leaves its process groups, its workflow run is abandoned, the monitors
        it held end, durable state is saved (``checkpoint``: not after a crash), and its
        monitors and links are told."""
        rt = self.rt
        if cell.groups:
            rt.groups.leave_all(cell)
        rt.workflows.kill_run(cell)
        cell.watching = None
        if checkpoint and cell.inst is not None and cell.facets is not None \
                and cell.facets.durable:
            facets_.stopping(rt, cell, cell.facets)
        if cell.monitors or cell.links:
            rt.links.notify_down(cell, reason, abnormal)
        cell.inst = None

    def finalize_stop(self, cell, reason) -> None:
        """``cell`` is gone: torn down, out of the table, its name and mailbox released
        (asks still queued there fail with ActorNotFound), its stop waiters told."""
        if cell.status == STOPPED:
            return
        rt = self.rt
        cell.status = STOPPED
        self.cells.pop(cell.id, None)
        rt.router.forget(cell.id)
        text = reason if isinstance(reason, str) else repr(reason)
        self.teardown(cell, text, text != "normal", checkpoint=True)
        rt.supervision.stopped_from_outside(cell, reason)
        if cell.name is not None and cell.name not in rt.router.static:
            tenant = tenant_of(cell.home_ctx)
            rt.router.unregister(cell.name, cell.id, tenant)
            rt.system.broadcast("unname", (cell.name, cell.id, tenant))
        mb, cell.mailbox = cell.mailbox, None
        executor = rt.executor
        while mb:
            env = mb.popleft()
            if env[KIND] == ASK:
                executor.reply_error(env, E.ActorNotFound(
                    f"actor {cell.id!r} stopped ({reason}) before handling {env[OP]!r}",
                    actor=cell.id))
        waiters, cell.stop_waiters = cell.stop_waiters, None
        for w in waiters or ():
            w(True, None)
        log.debug("stopped %s (%s)", cell.id, reason)

    def start_cell(self, cell) -> None:
        """A cell that exists but is not starting yet (a restart in place)."""
        cell.status = STARTING
