"""Start tests/scenarios/shutdown_order.toml and shut it down at once."""

import os

import plexhpc

HERE = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    with plexhpc.start(os.path.join(HERE, "shutdown_order.toml")) as node:
        if node.is_driver:
            node.ask("first", "ping")
