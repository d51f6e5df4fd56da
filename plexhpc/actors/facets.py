"""Facets: operational behaviour attached to an actor by config, not by its code.

- ``durability`` ``{checkpoint_interval = N, on_corrupt = "fresh" | "escalate"}``: the
  actor's state fields are checkpointed (signed, typed; :mod:`plexhpc.storage`) every N
  handled messages and when it stops, and laid over the new instance after its init
  handler on every start: after a crash, and on the next launch of the app.
- ``virtual_actor`` ``{idle_timeout = "10m" | ms, activation_strategy = "lazy" |
  "eager"}``: a lazy actor has no instance until its first message; any virtual actor
  is deactivated after ``idle_timeout`` without messages (terminate handler, state
  kept: in the checkpoint file with durability, in memory without) and comes back on
  the next message.
- ``metrics``: per-actor counts of messages and errors and handler latency, readable
  with the built-in ``__metrics__`` op and as Prometheus text (``metrics_text()`` of the node or driver handle).
- ``timer``: ``host.send_after`` timers are recorded and re-armed when the actor starts
  again, after a crash or on the next launch; a timer due while it was down fires then.
"""

from __future__ import annotations

import math
import re
import time

from .. import errors as E
from ..log import get_logger
from ..runtime.cell import STARTING, STOPPED

__all__ = ["parse_facets", "FacetState", "FACET_TYPES"]

log = get_logger("actor")

FACET_TYPES = ("durability", "virtual_actor", "metrics", "timer")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1}
_WEEK_MS = 7 * 24 * 3600 * 1000  # the longest duration, as every runtime timeout


def _duration_ms(value, where: str) -> float:
    if isinstance(value, bool):
        raise E.ConfigError(f"expected a duration like \"10m\" or milliseconds, got {value!r}",
                            key=where)
    if isinstance(value, (int, float)):
        try:
            ms = float(value)
        except OverflowError:  # an int past a float's range
            ms = math.inf
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise E.ConfigError(f"expected a duration like \"500ms\", \"30s\", \"10m\", "
                                f"\"1h\", got {value!r}", key=where)
        ms = float(m.group(1)) * _UNIT_MS[m.group(2)]
    if not (0 < ms <= _WEEK_MS):  # NaN and infinity fail this too
        shown = value if not isinstance(value, int) or value.bit_length() < 64 else (
            f"an int of {value.bit_length()} bits")
        raise E.ConfigError(f"expected a finite duration > 0 and at most a week "
                            f"({_WEEK_MS} ms), got {shown!r}", key=where)
    return ms


def parse_facets(facets, where: str) -> dict:
    """``[ "durability", {type = "virtual_actor", config = {...}}, ... ]`` -> {type:
    validated config}. Raises ConfigError naming the facet and the key."""
    out: dict = {}
    if facets is None:
        return out
    if not isinstance(facets, (list, tuple)):
        raise E.ConfigError("expected an array of facet names or tables", key=where)
    for j, facet in enumerate(facets):
        fkey = f"{where}[{j}]"
        if isinstance(facet, str):
            ftype, cfg = facet, {}
        elif isinstance(facet, dict):
            unknown = set(facet) - {"type", "priority", "config"}
            if unknown:
                raise E.ConfigError(f"unknown key(s) {sorted(unknown)}; expected type, "
                                    "priority, config", key=fkey)
            ftype, cfg = facet.get("type"), facet.get("config", {})
        else:
            raise E.ConfigError(f"expected a facet name or {{type = ..., config = {{...}}}}, "
                                f"got {facet!r}", key=fkey)
        if ftype not in FACET_TYPES:
            raise E.ConfigError(f"unknown facet {ftype!r}; expected one of "
                                f"{list(FACET_TYPES)}", key=fkey)
        if not isinstance(cfg, dict):
            raise E.ConfigError("config must be a table", key=f"{fkey}.config")
        if ftype in out:
            raise E.ConfigError(f"facet {ftype!r} given twice", key=fkey)
        out[ftype] = _check_facet(ftype, cfg, f"{fkey}.config")
    return out


def _check_facet(ftype: str, cfg: dict, where: str) -> dict:
    allowed = {"durability": {"checkpoint_interval", "on_corrupt"},
               "virtual_actor": {"idle_timeout", "activation_strategy"},
               "metrics": set(), "timer": set()}[ftype]
    unknown = set(cfg) - allowed
    if unknown:
        raise E.ConfigError(f"unknown key(s) {sorted(unknown)} for facet {ftype!r}; "
                            f"expected {sorted(allowed)}", key=where)
    if ftype == "durability":
        n = cfg.get("checkpoint_interval", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 2 ** 31:
            shown = n if not isinstance(n, int) or n.bit_length() < 64 else "a larger int"
            raise E.ConfigError(f"checkpoint_interval must be an integer >= 1 and at most "
                                f"{2 ** 31}, "
                                f"got {shown!r}", key=f"{where}.checkpoint_interval")
        oc = cfg.get("on_corrupt", "fresh")
        if oc not in ("fresh", "escalate"):
            raise E.ConfigError(f"on_corrupt must be \"fresh\" or \"escalate\", got {oc!r}",
                                key=f"{where}.on_corrupt")
        return {"checkpoint_interval": n, "on_corrupt": oc}
    if ftype == "virtual_actor":
        strategy = cfg.get("activation_strategy", "lazy")
        if strategy not in ("lazy", "eager"):
            raise E.ConfigError(f"activation_strategy must be \"lazy\" or \"eager\", got "
                                f"{strategy!r}", key=f"{where}.activation_strategy")
        return {"idle_timeout_ms": _duration_ms(cfg.get("idle_timeout", "10m"),
                                                f"{where}.idle_timeout"),
                "activation_strategy": strategy}
    return {}


class FacetState:
    """The runtime side of one actor's facets (None on actors without facets)."""

    __slots__ = ("key", "interval", "on_corrupt", "since", "seq", "virtual", "idle_ms",
                 "eager", "dormant", "saved", "last_msg", "metrics", "timers", "durable")

    def __init__(self, key: str, facets: dict):
        self.key = key
        d = facets.get("durability")
        self.durable = d is not None
        self.interval = d["checkpoint_interval"] if d else 0
        self.on_corrupt = d["on_corrupt"] if d else "fresh"
        self.since = 0
        self.seq = 0
        v = facets.get("virtual_actor")
        self.virtual = v is not None
        self.idle_ms = v["idle_timeout_ms"] if v else 0.0
        self.eager = bool(v and v["activation_strategy"] == "eager")
        self.dormant = False
        self.saved = None       # state kept in memory across deactivation (no durability)
        self.last_msg = time.monotonic()
        self.metrics = {"messages": 0, "errors": 0, "latency_s": 0.0, "latency_max_s": 0.0,
                        "activations": 0, "checkpoints": 0, "by_op": {}} if (
            "metrics" in facets) else None
        self.timers = "timer" in facets


def snapshot(spec, inst) -> dict:
    """The state fields of an instance, as a plain dict (what a checkpoint holds)."""
    d = inst.__dict__
    return {name: d[name] for name in spec.fields if name in d}


def restore(inst, state: dict, spec) -> None:
    for name, value in state.items():
        if name in spec.fields:
            inst.__dict__[name] = value


# ---- runtime hooks (called by the node) ---------------------------------------------

def checkpoint(node, cell, fs: FacetState) -> None:
    """Write the actor's state now (durability), resetting the message count."""
    fs.since = 0
    if cell.inst is None:
        return
    fs.seq += 1
    try:
        node.local_state.checkpoints.save(fs.key, snapshot(cell.spec, cell.inst), fs.seq)
    except (TypeError, ValueError) as exc:
        log.error("%s: state cannot be checkpointed (%s); fix the state fields to hold "
                  "plain data", cell.id, exc)
        return
    except E.StateError as exc:  # the file or the key: the actor goes on, loudly
        log.error("%s: checkpoint %d not written: %s", cell.id, fs.seq, exc)
        return
    if fs.metrics is not None:
        fs.metrics["checkpoints"] += 1


def after_message(node, cell, fs: FacetState, op: str, dt: float, ok: bool) -> None:
    fs.last_msg = time.monotonic()
    m = fs.metrics
    if m is not None:
        m["messages"] += 1
        m["latency_s"] += dt
        if dt > m["latency_max_s"]:
            m["latency_max_s"] = dt
        per = m["by_op"].get(op)
        if per is None:
            per = m["by_op"][op] = [0, 0, 0.0]
        per[0] += 1
        per[2] += dt
        if not ok:
            m["errors"] += 1
            per[1] += 1
    if ok and fs.durable:
        fs.since += 1
        if fs.since >= fs.interval:
            checkpoint(node, cell, fs)


def on_started(node, cell, fs: FacetState, first: bool) -> None:
    """After a successful init: lay the saved state over the instance, re-arm durable
    timers (first start in this process only), schedule the idle check."""
    try:
        _restore_durable(node, cell, fs, first)
    except E.CheckpointRejected:
        raise
    except E.StateError as exc:
        # the key is missing or not the one that signed the state, or the file cannot
        # be opened: starting empty would lose the state without a word, so the start
        # fails (the runtime treats CheckpointRejected from here as a failed start)
        raise E.CheckpointRejected(f"{cell.id} cannot start: its durable state cannot "
                                   f"be read: {exc}") from exc
    if fs.virtual:
        node.call_later(fs.idle_ms / 1000.0, lambda: idle_check(node, cell, fs))


def _restore_durable(node, cell, fs: FacetState, first: bool) -> None:
    """on_started's durable part: the checkpoint laid over the instance, the timers
    re-armed (rows refused by the timer store are left out, with a warning)."""
    if fs.durable:
        try:
            store = node.local_state
            found = store.load_latest(fs.key) if first else store.checkpoints.load(fs.key)
        except E.CheckpointRejected as exc:
            if fs.on_corrupt == "escalate":
                raise
            log.error("%s: checkpoint refused (%s); starting from the initial state",
                      cell.id, exc)
            found = None
        if found is not None:
            restore(cell.inst, found[0], cell.spec)
            fs.seq = found[1]
    elif fs.saved is not None:
        restore(cell.inst, fs.saved, cell.spec)
    fs.saved = None
    fs.dormant = False
    fs.last_msg = time.monotonic()
    if fs.metrics is not None:
        fs.metrics["activations"] += 1
    if fs.timers and first:
        from ..storage.durable import now_ms
        now = now_ms()
        for timer_id, due, op, rec in node.local_state.timers.pending(fs.key):
            if type(rec) is not dict:
                log.warning("%s: durable timer %s holds no timer record; not re-armed",
                            cell.id, timer_id)
                continue
            ctx = tuple(rec["ctx"]) if rec.get("ctx") else cell.home_ctx
            node.arm_timer(cell, max(0, due - now), op, rec.get("payload"), ctx, timer_id)


def idle_check(node, cell, fs: FacetState) -> None:
    if cell.status == STOPPED or fs.dormant or cell.inst is None:
        return
    idle = time.monotonic() - fs.last_msg
    if idle * 1000 < fs.idle_ms or cell.running is not None or cell.mailbox or (
            cell.id in node.runs):
        node.call_later(max(fs.idle_ms / 1000.0 - idle, 0.01),
                        lambda: idle_check(node, cell, fs))
        return
    deactivate(node, cell, fs)


def deactivate(node, cell, fs: FacetState) -> None:
    """Drop the instance of an idle virtual actor, keeping its state."""
    if fs.durable:
        checkpoint(node, cell, fs)
    else:
        fs.saved = snapshot(cell.spec, cell.inst)
    cell.inst = None
    cell.status = STARTING
    fs.dormant = True
    log.debug("%s deactivated after %.0f ms idle", cell.id, fs.idle_ms)


def stopping(node, cell, fs: FacetState) -> None:
    """A normal stop (or shutdown): write the last state."""
    if fs.durable and cell.inst is not None:
        checkpoint(node, cell, fs)


def metrics_of(cell) -> dict | None:
    fs = cell.facets
    if fs is None or fs.metrics is None:
        return None
    m = fs.metrics
    return {"actor_id": cell.id, "messages": m["messages"], "errors": m["errors"],
            "latency_avg_ms": m["latency_s"] * 1000 / m["messages"] if m["messages"] else 0.0,
            "latency_max_ms": m["latency_max_s"] * 1000, "activations": m["activations"],
            "checkpoints": m["checkpoints"],
            "by_op": {op: {"messages": v[0], "errors": v[1], "latency_s": v[2]}
                      for op, v in m["by_op"].items()}}


def _label(value) -> str:
    """A label value that can be written as UTF-8: a code point that cannot (a lone
    surrogate in a spawned actor's name) is written as its ``\\udcxx`` escape, so one
    odd name never breaks the scrape of every actor of the rank."""
    text = str(value)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def prometheus_registry(cells_of):
    """A Prometheus registry whose collector reads the actors' counters at each scrape
    (``cells_of()`` returns the rank's cells)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Collector:
        def collect(self):
            cells = cells_of()
            msgs = CounterMetricFamily("plexhpc_actor_messages", "Messages handled",
                                       labels=["actor", "op"])
            errs = CounterMetricFamily("plexhpc_actor_errors", "Messages whose handler "
                                       "raised", labels=["actor", "op"])
            lat = CounterMetricFamily("plexhpc_actor_handler_seconds", "Time in handlers",
                                      labels=["actor", "op"])
            act = GaugeMetricFamily("plexhpc_actor_activations", "Times the actor was "
                                    "started or activated", labels=["actor"])
            for cell in cells:
                fs = cell.facets
                if fs is None or fs.metrics is None:
                    continue
                aid = _label(cell.id)
                for op, (n, e, s) in list(fs.metrics["by_op"].items()):
                    msgs.add_metric([aid, _label(op)], n)
                    errs.add_metric([aid, _label(op)], e)
                    lat.add_metric([aid, _label(op)], s)
                act.add_metric([aid], fs.metrics["activations"])
            yield from (msgs, errs, lat, act)

    reg = CollectorRegistry()
    reg.register(_Collector())
    return reg


def prometheus_text(cells) -> str:
    """The rank's actor metrics in the Prometheus text format."""
    from prometheus_client import generate_latest
    cells = list(cells)
    return generate_latest(prometheus_registry(lambda: cells)).decode()


#: scrapes served at once per rank; one more is answered 503 at once
METRICS_MAX_CONNECTIONS = 8
#: how long a connection may take to send its request before it is dropped
METRICS_SOCKET_TIMEOUT_S = 5.0


def serve_metrics(node, port: int, addr: str):
    """Serve this rank's actor metrics at ``http://addr:port/metrics`` from a daemon
    thread; returns the server (``shutdown()`` and ``server_close()`` stop it).

    What it shows: for every actor of the rank that has the ``metrics`` facet, of every
    tenant, its actor id and per-op message, error and handler-time counters and its
    activation count; no payloads, state or request contexts. The ids name the actors
    (and so, often, what each tenant runs), which is why the default address is
    127.0.0.1 and why ``[app] metrics_token_file`` offers a bearer token: with one set
    a scrape without ``Authorization: Bearer <token>`` gets 401. At most
    METRICS_MAX_CONNECTIONS scrapes are served at once, one more gets 503 at once, and
    a connection that sends no request within METRICS_SOCKET_TIMEOUT_S is dropped, so
    no number of idle or slow clients can exhaust the rank's threads."""
    import hmac
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = prometheus_registry(node.actor_cells)
    token = getattr(node.config, "metrics_token", None)
    want = None if token is None else f"Bearer {token}".encode("latin-1")
    slots = threading.BoundedSemaphore(METRICS_MAX_CONNECTIONS)
    busy = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 44\r\n\r\n"
            b"too many scrapes at once; retry in a second\n")

    class Handler(BaseHTTPRequestHandler):
        timeout = METRICS_SOCKET_TIMEOUT_S

        def do_GET(self):  # noqa: N802 - the http.server name
            if urlsplit(self.path).path not in ("/metrics", "/"):
                return self._reply(404, b"not found: the metrics are at /metrics\n")
            if want is not None:
                got = self.headers.get("Authorization", "").encode("latin-1", "replace")
                if not hmac.compare_digest(got, want):
                    return self._reply(401, b"a bearer token is needed: send "
                                       b"Authorization: Bearer <the token in [app] "
                                       b"metrics_token_file>\n",
                                       {"WWW-Authenticate": 'Bearer realm="plexhpc"'})
            try:
                body = generate_latest(registry)
            except Exception as exc:  # noqa: BLE001 - a scrape must not kill the thread
                log.error("metrics scrape failed: %s: %s", type(exc).__name__, exc)
                return self._reply(500, b"the metrics could not be rendered; see the "
                                   b"rank's log\n")
            self._reply(200, body, {"Content-Type": CONTENT_TYPE_LATEST})

        def _reply(self, code, body, headers=None):
            self.send_response(code)
            for k, v in {"Content-Type": "text/plain; charset=utf-8", **(headers or {}),
                         "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):  # scrapes are not worth a log line each
            log.debug("metrics %s: " + fmt, self.client_address[0], *args)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

        def process_request(self, request, client_address):
            if not slots.acquire(blocking=False):
                try:
                    request.settimeout(1.0)
                    request.sendall(busy)
                except OSError:
                    pass
                self.shutdown_request(request)
                return
            try:
                super().process_request(request, client_address)
            except BaseException:
                slots.release()
                raise

        def process_request_thread(self, request, client_address):
            try:
                super().process_request_thread(request, client_address)
            finally:
                slots.release()

    server = Server((addr, port), Handler)
    if want is None and addr not in ("127.0.0.1", "::1", "localhost"):
        log.warning("metrics on %s:%d are open to anyone who can reach the address and "
                    "show every tenant's actor ids; set [app] metrics_token_file to "
                    "require a bearer token", addr, server.server_address[1])
    threading.Thread(target=server.serve_forever, name=f"plexhpc-metrics-{port}",
                     daemon=True).start()
    return server
