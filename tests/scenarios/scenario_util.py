"""Helpers the scenario programs share."""


def err(fn):
    """The exception ``fn()`` raised, or None: scenarios record errors as data."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return exc
    return None
