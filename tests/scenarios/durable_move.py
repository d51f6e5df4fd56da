"""Add to "mover" (phase "add") or read it (phase "read"); rank 0 prints a RESULT line."""

import json
import os
import sys

import plexhpc

HERE = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    with plexhpc.start(os.path.join(HERE, "durable_move.toml")) as node:
        if node.is_driver:
            if sys.argv[1] == "add":
                for _ in range(5):
                    node.ask("mover", "add")
            out = {"value": node.ask("mover", "get")["value"],
                   "rank": int(node.resolve("mover").split("@")[1])}
            print("RESULT " + json.dumps(out), flush=True)
