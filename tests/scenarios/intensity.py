"""Drive Flaky past its restart intensity: the job must stop with status 1."""
import sys
import time

import plexhpc

with plexhpc.start(sys.argv[1]) as node:
    if node.is_driver:
        for _ in range(20):
            try:
                node.send("flaky", "crash")
            except plexhpc.NodeClosed:
                break
            time.sleep(0.05)
        time.sleep(2)
