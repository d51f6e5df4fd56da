"""Serve metrics over HTTP (port from argv) and scrape rank 1's; rank 0 prints RESULT."""

import json
import sys
import urllib.request

import plexhpc

if __name__ == "__main__":
    port = int(sys.argv[1])
    cfg = {"app": {"name": "metrics", "metrics_port": port},
           "supervisor": {"children": [{"name": "metered", "class": "durable_actors:Counter",
                                        "rank": 1, "facets": ["metrics"]}]}}
    with plexhpc.start(cfg) as node:
        if node.is_driver:
            for _ in range(3):
                node.ask("metered", "add")
            with urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/metrics",
                                        timeout=10) as resp:
                text = resp.read().decode()
            lines = [ln for ln in text.splitlines() if "metered" in ln
                     and not ln.startswith("#")]
            print("RESULT " + json.dumps({"lines": lines}), flush=True)
