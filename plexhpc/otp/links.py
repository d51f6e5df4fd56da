"""Monitors and links, OTP semantics, across ranks: the node's side.

A monitor is held by the watching actor (``cell.watching``: ref -> target) and recorded
on the watched one (``cell.monitors``: ref -> watcher); whichever rank the watched actor
lives on sends exactly one ``__DOWN__`` per monitor when it stops for any reason. Links
are recorded on both sides; an abnormal exit sends ``__EXIT__`` to every peer, which
exits too unless it handles ``__EXIT__``. Acting for a tenant, an actor may link to and
monitor only that tenant's actors and the system's (the system may link to and monitor
any); a monitor of another tenant's actor fires at once with ``noproc``.
"""

from __future__ import annotations

from greenlet import getcurrent

from .. import errors as E
from ..context import tenant_of
from ..runtime import envelope as env_
from ..runtime.actor_table import same_tenant
from ..runtime.cell import STOPPED
from ..runtime.routing import rank_of

__all__ = ["Links"]


class Links:
    """Monitors and links of this rank's actors. ``rt`` is the node (routing, delivery,
    system messages)."""

    def __init__(self, rt):
        self.rt = rt
        self.rank = rt.rank
        ops = rt.system
        ops.register("monitor", lambda src, d: self._add_monitor(*d), owner="links",
                     payload="(watched id, monitor ref, watcher id, caller ctx)")
        ops.register("demonitor", lambda src, d: self._drop_monitor(*d), owner="links",
                     payload="(watched id, monitor ref)")
        ops.register("link", lambda src, d: self._add_link(*d), owner="links",
                     payload="(target id, peer id, caller ctx)")
        ops.register("unlink", lambda src, d: self._drop_link(*d), owner="links",
                     payload="(target id, peer id)")
        ops.register("exit_signal", lambda src, d: self.exit_signal(*d), owner="links",
                     payload="(to id, from id, reason): a linked actor exited")

    def monitor(self, cell, target: str) -> str:
        """Watch ``target``: exactly one ``__DOWN__`` cast reaches ``cell`` when it stops
        for any reason (at once, reason ``noproc``, if it does not exist)."""
        ref = f"mon-{self.rank}-{self.rt.pending.next_corr()}"
        if cell.watching is None:
            cell.watching = {}
        ctx = getattr(getcurrent(), "ctx", None) or cell.ctx
        try:
            aid, r = self.rt.router.resolve(target, tenant_of(ctx))
        except E.ActorNotFound:  # an unknown name: down already, as in Erlang
            cell.watching[ref] = str(target)
            self.rt.executor.deliver(env_.send(cell.id, str(target), "__DOWN__", {
                "down_from": str(target), "monitor_ref": ref, "down_reason": "noproc"}))
            return ref
        cell.watching[ref] = aid
        if r == self.rank:
            self._add_monitor(aid, ref, cell.id, ctx)
        else:
            self.rt.system.post(r, "monitor", (aid, ref, cell.id, ctx))
        return ref

    def demonitor(self, cell, ref: str) -> bool:
        """Stop watching: False if ``ref`` is not one of this actor's live monitors (it
        fired already, or belongs to another actor). No ``__DOWN__`` for it is handled
        afterwards, even one already on its way."""
        aid = (cell.watching or {}).pop(ref, None)
        if aid is None:
            return False
        if "@" not in aid:
            return True
        r = rank_of(aid)
        if r == self.rank:
            self._drop_monitor(aid, ref)
        else:
            self.rt.system.post(r, "demonitor", (aid, ref))
        return True

    def _add_monitor(self, aid, ref, watcher, ctx=None) -> None:
        target = self.rt.actors.cells.get(aid)
        # acting for a tenant, an actor may watch only that tenant's actors (and the
        # system's): another tenant's actor reads as one that does not exist, so its
        # existence, its exits and their reasons stay behind the wall
        if target is None or target.status == STOPPED or not same_tenant(ctx, target):
            self.rt.send_quiet(watcher, "__DOWN__", {"down_from": aid, "monitor_ref": ref,
                                                   "down_reason": "noproc"}, aid)
            return
        if target.monitors is None:
            target.monitors = {}
        target.monitors[ref] = watcher

    def _drop_monitor(self, aid, ref) -> None:
        target = self.rt.actors.cells.get(aid)
        if target is not None and target.monitors:
            target.monitors.pop(ref, None)

    def link(self, cell, peer: str) -> None:
        """Share fate with ``peer``: when either exits abnormally the other gets an
        ``__EXIT__`` cast (or, without an ``__EXIT__`` handler, exits too)."""
        ctx = getattr(getcurrent(), "ctx", None) or cell.ctx
        aid, r = self.rt.router.resolve(peer, tenant_of(ctx))
        if aid == cell.id:
            raise E.InvalidMessage(f"{aid} cannot link to itself")
        if r == self.rank:
            target = self.rt.actors.cells.get(aid)
            if target is not None and not same_tenant(ctx, target):
                raise E.CapabilityDenied(
                    f"a caller acting for tenant {ctx[0]!r} cannot link to {aid}, which "
                    f"belongs to tenant {target.home_ctx[0]!r}", capability="link")
        if cell.links is None:
            cell.links = set()
        cell.links.add(aid)
        if r == self.rank:
            self._add_link(aid, cell.id)
        else:
            self.rt.system.post(r, "link", (aid, cell.id, ctx))

    def unlink(self, cell, peer: str) -> None:
        ctx = getattr(getcurrent(), "ctx", None) or cell.ctx
        aid, r = self.rt.router.resolve(peer, tenant_of(ctx))
        if cell.links:
            cell.links.discard(aid)
        if r == self.rank:
            self._drop_link(aid, cell.id)
        else:
            self.rt.system.post(r, "unlink", (aid, cell.id))

    def _add_link(self, aid, peer, ctx=None) -> None:
        target = self.rt.actors.cells.get(aid)
        if target is None or target.status == STOPPED:
            self.exit_signal(peer, aid, "noproc")
            return
        if not same_tenant(ctx, target):  # fate sharing only within a tenant
            self.exit_signal(peer, aid, f"link refused: {aid} belongs to another tenant")
            return
        if target.links is None:
            target.links = set()
        target.links.add(peer)

    def _drop_link(self, aid, peer) -> None:
        target = self.rt.actors.cells.get(aid)
        if target is not None and target.links:
            target.links.discard(peer)

    def exit_signal(self, to, frm, reason) -> None:
        """Tell linked actor ``to`` that ``frm`` exited with ``reason``."""
        try:
            aid, r = self.rt.router.resolve(to)
        except E.PlexError:
            return
        if r != self.rank:
            self.rt.system.post(r, "exit_signal", (aid, frm, reason))
            return
        cell = self.rt.actors.cells.get(aid)
        if cell is None or cell.status == STOPPED:
            return
        if cell.links:
            cell.links.discard(frm)
        if reason == "normal":
            return  # a normal exit is not propagated (as in OTP without trap_exit)
        self.rt.executor.deliver(env_.send(aid, frm, "__EXIT__", {"exit_from": frm,
                                                                   "exit_reason": reason}))

    def notify_down(self, cell, reason: str, abnormal: bool) -> None:
        """Fire ``cell``'s monitors (always) and links (abnormal exits only: any reason
        but "normal", "shutdown" included, as in OTP), once. While the job shuts down,
        links are not propagated: every actor is stopping anyway, in order."""
        if self.rt.lifecycle.shutting_down:
            abnormal = False
        mons, cell.monitors = cell.monitors, None
        for ref, watcher in (mons or {}).items():
            self.rt.send_quiet(watcher, "__DOWN__", {"down_from": cell.id, "monitor_ref": ref,
                                                   "down_reason": reason}, cell.id)
        links, cell.links = cell.links, None
        for peer in links or ():
            self.exit_signal(peer, cell.id, reason if abnormal else "normal")

