"""Issue 10, finding 1: inputs that overflow SQLite's 64-bit integers, sent from an
actor on rank 1 to the state rank (rank 0). Each must come back as a clear error and
the state rank must keep serving; rank 0 prints one RESULT line."""

import json

import plexhpc
from hard_storage_actors import PROBES


def main():
    cfg = {"app": {"name": "hard-storage-overflow"},
           "supervisor": {"children": [{"name": "prober",
                                        "class": "hard_storage_actors:Prober", "rank": 1}]}}
    out = {}
    with plexhpc.start(cfg) as node:
        if not node.is_driver:
            return
        for i, case in enumerate(PROBES):
            out[case] = node.ask("prober", "probe", {"case": case}, timeout_ms=20000)
            out[f"alive_after_{case}"] = node.ask("prober", "alive", {"n": i},
                                                  timeout_ms=20000)
        print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
