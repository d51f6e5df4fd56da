"""Shutdown with messages in flight: the driver sends casts and leaves at once; the
sink's terminate handler records how many it handled before stopping."""

import json
import sys

import plexhpc


def main():
    out_file, count = sys.argv[1], int(sys.argv[2])
    cfg = {"app": {"drain_timeout_s": 10}, "supervisor": {"children": [
        {"name": "sink", "class": "lib_actors:Sink", "rank": 1, "args": {"out": out_file}},
        {"name": "later1", "class": "lib_actors:Sink", "rank": 1, "args": {"out": out_file}},
        {"name": "later2", "class": "lib_actors:Sink", "rank": 1, "args": {"out": out_file}},
        {"name": "p0", "class": "lib_actors:Probe", "rank": 0}]}}
    with plexhpc.start(cfg) as node:
        if node.is_driver:
            for i in range(count):
                node.send("sink", "note", {"i": i})
    print("RESULT " + json.dumps({"rank": node.rank, "exit_code": node.exit_code}), flush=True)


if __name__ == "__main__":
    main()
