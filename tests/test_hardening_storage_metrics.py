"""Issue 10, the metrics endpoint: a bounded number of connections (503 beyond), label
values that cannot be encoded escaped instead of breaking the scrape, an optional
bearer token."""

from __future__ import annotations

import socket
import time
import types
import urllib.error
import urllib.request

import pytest

from plexhpc.actors import facets
from plexhpc.actors.facets import FacetState, prometheus_text, serve_metrics


def cell(aid, op="add", n=3):
    fs = FacetState(aid, {"metrics": {}})
    fs.metrics["by_op"][op] = [n, 0, 0.5]
    fs.metrics["activations"] = 1
    return types.SimpleNamespace(id=aid, facets=fs)


CELLS = [cell("good@0"), cell("bad\udcff@0", op="o\ud800p")]


@pytest.fixture
def serve():
    servers = []

    def start(token=None, cells=CELLS):
        node = types.SimpleNamespace(actor_cells=lambda: list(cells),
                                     config=types.SimpleNamespace(metrics_token=token))
        server = serve_metrics(node, 0, "127.0.0.1")
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/metrics", server
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_name_with_a_lone_surrogate_does_not_break_the_scrape(serve):
    text = prometheus_text(CELLS)
    assert 'plexhpc_actor_messages_total{actor="good@0",op="add"} 3.0' in text
    assert 'actor="bad\\\\udcff@0",op="o\\\\ud800p"' in text
    url, _ = serve()
    status, body = get(url)
    assert status == 200 and 'actor="good@0"' in body


def test_a_token_is_required_when_one_is_set(serve):
    url, _ = serve(token="tok-123")
    assert get(url)[0] == 401
    assert get(url, {"Authorization": "Bearer nope"})[0] == 401
    assert get(url, {"Authorization": "Bearer tok-123x"})[0] == 401
    assert get(url, {"Authorization": "Bearer \xe9"})[0] == 401
    status, body = get(url, {"Authorization": "Bearer tok-123"})
    assert status == 200 and "plexhpc_actor_messages_total" in body


def test_other_paths_are_404(serve):
    url, _ = serve()
    assert get(url.replace("/metrics", "/x"))[0] == 404


def test_connections_beyond_the_cap_get_503_and_slots_come_back(serve, monkeypatch):
    monkeypatch.setattr(facets, "METRICS_SOCKET_TIMEOUT_S", 60.0)  # idle ones hold on
    url, server = serve()
    port = server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in
            range(facets.METRICS_MAX_CONNECTIONS)]
    try:
        # the server takes connections in order: by the time it reaches this one, every
        # idle connection before it holds a slot (each waits for its request line)
        status, body = get(url)
        assert status == 503 and "too many scrapes" in body
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 30
    while True:  # the slots come back as the handlers see their connections close
        status, _ = get(url)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200


def test_a_slow_client_is_dropped_after_the_socket_timeout(serve, monkeypatch):
    monkeypatch.setattr(facets, "METRICS_SOCKET_TIMEOUT_S", 0.2)
    _, server = serve()
    s = socket.create_connection(("127.0.0.1", server.server_address[1]))
    try:
        s.settimeout(30)
        s.sendall(b"GET /metr")  # and nothing more
        assert s.recv(100) == b""  # closed by the server, not held for ever
    finally:
        s.close()
