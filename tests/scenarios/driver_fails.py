"""The driver's block raises: every rank must stop (not hang) and rank 0 must fail."""

import plexhpc

cfg = {"supervisor": {"children": [
    {"name": "p0", "class": "lib_actors:Probe", "rank": 0},
    {"name": "p1", "class": "lib_actors:Probe", "rank": 1}]}}
with plexhpc.start(cfg) as node:
    if node.is_driver:
        node.ask("p1", "whoami")
        raise RuntimeError("driver failed on purpose")
