"""``python -m plexhpc ...`` is the same as the ``plexhpc`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
