"""Local storage building blocks for a node: no MPI, no actors, only SQLite and memory.

* :mod:`~plexhpc.storage.codec` — plain-data encoding (never pickle) and signed envelopes
* :mod:`~plexhpc.storage.keys` — the signing key, kept outside the state directory
* :mod:`~plexhpc.storage.db` — opening the node's SQLite file (WAL) with every table
* :mod:`~plexhpc.storage.kv` — scoped key-value entries with TTL, CAS and counters
* :mod:`~plexhpc.storage.tuplespace` — Linda-style tuples with blocking waiters
* :mod:`~plexhpc.storage.channels` — durable at-least-once queues with leases
* :mod:`~plexhpc.storage.checkpoints` — signed actor checkpoints and workflow steps
* :mod:`~plexhpc.storage.timers` — durable timers

A typical node::

    conn = open_db(os.path.join(state_dir, "state.db"))
    key = load_or_create_key(state_dir=state_dir)
    kv, channels = KVStore(conn), ChannelStore(conn)
    checkpoints = CheckpointStore(conn, key)
    ...
    conn.close()
"""

from __future__ import annotations

from .channels import ChannelStore
from .checkpoints import CheckpointStore
from .codec import decode, encode, seal, unseal
from .db import open_db
from .keys import load_or_create_key
from .kv import KVStore
from .timers import TimerStore
from .tuplespace import TupleSpace, match

__all__ = [
    "encode", "decode", "seal", "unseal",
    "load_or_create_key",
    "open_db",
    "KVStore",
    "TupleSpace", "match",
    "ChannelStore",
    "CheckpointStore",
    "TimerStore",
]
