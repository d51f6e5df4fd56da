"""Start the app config given on the command line, ask each child once, shut down."""

import sys

import plexhpc

if __name__ == "__main__":
    with plexhpc.start(sys.argv[1]) as node:
        if node.is_driver:
            for child in node.config.children:
                node.ask(child.name, "__ping__")
