"""Issue 10, finding 4: a durable actor on rank 1 (on_corrupt "fresh", where a lost or
replaced key used to start it empty without a word). ``add`` adds 5 to its counter,
``get`` reads it; rank 0 prints one RESULT line."""

import json
import sys

import plexhpc


def main():
    cfg = {"app": {"name": "hard-storage-keys"},
           "supervisor": {"children": [{"name": "kept", "class": "durable_actors:Counter",
                                        "rank": 1, "facets": [
                                            {"type": "durability",
                                             "config": {"checkpoint_interval": 1}}]}]}}
    with plexhpc.start(cfg) as node:
        if not node.is_driver:
            return
        if sys.argv[1] == "add":
            node.ask("kept", "add", {"n": 5}, timeout_ms=20000)
        got = node.ask("kept", "get", timeout_ms=20000)
        print("RESULT " + json.dumps({"value": got["value"]}), flush=True)


if __name__ == "__main__":
    main()
