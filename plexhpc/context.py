"""The request context every message carries, and the capabilities an actor may use.

A context says on whose behalf a message runs: ``tenant``, ``namespace`` and
``principal``. Callers set it where a request enters the system (a driver's
``node.ask(..., tenant="acme")``, later the gateway from a token); from there the runtime
copies it onto every ask, send and timer a handler makes, so an actor can read it
(``host.context()``) but cannot change it for the messages it forwards. KV keys,
tuples, channels and process groups are scoped by ``(tenant, namespace)`` inside the
host, so an actor serving one tenant cannot name another tenant's data.

Capabilities narrow what an actor may ask of the host (the Python counterpart of a WIT
import list): an actor whose config or decorator lists ``capabilities = ["kv"]`` gets a
:class:`~plexhpc.errors.CapabilityDenied` naming the capability when it calls
``host.ts`` or ``host.spawn``. An actor that declares no list may use every capability.
"""

from __future__ import annotations

from typing import NamedTuple

from . import errors as E

__all__ = ["RequestContext", "DEFAULT_CONTEXT", "DEFAULT_CTX", "SYSTEM_TENANT", "make_context",
           "tenant_of", "is_system", "may_act_on", "CAPABILITIES", "check_capabilities",
           "require"]


class RequestContext(NamedTuple):
    """On whose behalf a message runs."""

    tenant: str
    namespace: str
    principal: str

    @property
    def scope(self) -> tuple:
        """What data is scoped by: (tenant, namespace)."""
        return (self.tenant, self.namespace)


#: the tenant label of the job's own, tenant-less services; reserved: no caller can claim it
SYSTEM_TENANT = "default"
#: the context of messages no caller labelled (and of shared, tenant-less services)
DEFAULT_CONTEXT = RequestContext(SYSTEM_TENANT, "default", "system")
#: the same as the runtime carries it: contexts travel as plain tuples, which pickle
#: natively (a namedtuple on the wire cost ~3 us per remote ask to reconstruct)
DEFAULT_CTX = tuple(DEFAULT_CONTEXT)

#: host facilities an actor may be granted: ``lifecycle`` is ``host.shutdown`` (ending
#: the whole job), ``monitor`` is ``host.monitor`` and ``host.link``, ``metrics`` is
#: asking other actors for ``__metrics__``
CAPABILITIES = ("kv", "ts", "channel", "spawn", "shards", "pools", "timers", "http",
                "lifecycle", "monitor", "metrics")

_MAX_LEN = 128


def _label(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise E.InvalidMessage(f"{what} must be a non-empty str, got {value!r}")
    if len(value) > _MAX_LEN or not value.isprintable():
        raise E.InvalidMessage(f"{what} must be at most {_MAX_LEN} printable characters, "
                               f"got {value!r}")
    return value


def make_context(tenant: str | None = None, namespace: str | None = None,
                 principal: str | None = None) -> tuple | None:
    """A validated context (as the plain tuple the runtime carries) from a caller's
    keywords; None when none was given (the message then runs in the target's own
    context).

    A context names a tenant: a namespace or principal without one is refused (it used
    to fall into the system tenant), and so is the reserved tenant ``"default"``, which
    is the job's own services' (claiming it would act as the system)."""
    if tenant is None and namespace is None and principal is None:
        return None
    if tenant is None:
        raise E.InvalidMessage(
            f"a request context needs a tenant: namespace={namespace!r}, "
            f"principal={principal!r} were given without one; pass tenant=...")
    _label(tenant, "tenant")
    if tenant == SYSTEM_TENANT:
        raise E.InvalidMessage(
            f"tenant {SYSTEM_TENANT!r} is reserved for the job's own services; a request "
            f"without a tenant already runs as the system; name your tenant")
    return (tenant,
            _label(namespace if namespace is not None else "default", "namespace"),
            _label(principal if principal is not None else "anonymous", "principal"))


def tenant_of(ctx) -> str | None:
    """The tenant a context acts for; None for the system (no context, or the default
    context that the job's own services run in)."""
    if ctx is None or ctx[0] == SYSTEM_TENANT:
        return None
    return ctx[0]


def is_system(ctx) -> bool:
    """True when ``ctx`` acts for the job itself, not for a tenant. Sound because no
    caller can make a context with the reserved tenant (see :func:`make_context`)."""
    return ctx is None or ctx[0] == SYSTEM_TENANT


def may_act_on(ctx, owner_tenant: str | None) -> bool:
    """May a caller acting in ``ctx`` use or change something owned by ``owner_tenant``
    (None: owned by the system)? The system may act on everything; a tenant on its own
    things only. Shared system services are reached by asking them (they then act in
    the caller's context), not through this check."""
    t = tenant_of(ctx)
    return t is None or t == owner_tenant


def check_capabilities(caps, where: str) -> frozenset | None:
    """Validate a declared capability list (None: not declared, everything allowed)."""
    if caps is None:
        return None
    if not isinstance(caps, (list, tuple, set, frozenset)) or not all(
            isinstance(c, str) for c in caps):
        raise E.ConfigError(f"expected a list of capability names, got {caps!r}", key=where)
    unknown = sorted(set(caps) - set(CAPABILITIES))
    if unknown:
        raise E.ConfigError(f"unknown capabilities {unknown}; expected names from "
                            f"{list(CAPABILITIES)}", key=where)
    return frozenset(caps)


def require(cell, capability: str) -> None:
    """Raise CapabilityDenied unless ``cell`` may use ``capability``."""
    caps = cell.caps
    if caps is not None and capability not in caps:
        raise E.CapabilityDenied(
            f"actor {cell.id} may not use {capability!r}: its declared capabilities are "
            f"{sorted(caps)}; add {capability!r} to its capabilities in the app config "
            f"(or the @actor decorator) if it is meant to", capability=capability)
