"""Envelopes, the actor messages between ranks: building one, and pickling a batch of 64
and reading it back the way ``plexhpc.runtime.transport`` moves a batch.

An envelope is a plain tuple ``(kind, to, frm, op, payload, corr, reply_rank, ctx)``.
The baselines are the alternatives to that choice: a NamedTuple with the same fields,
and a dict. The batch groups also time pickling each envelope on its own, which is what
sending one MPI message per envelope instead of one per batch would cost.

``Transport`` has no public serialization function (it is done inside
``Transport._send_batch`` / ``Transport.poll``, on an MPI communicator), so this file
replicates its calls: ``pickle.dumps(batch, 5, buffer_callback=keep_large)`` where
``keep_large`` keeps buffers under ``oob_threshold`` (4096 bytes) in band, and
``pickle.loads(data)``. Keep them in step with ``transport.py``.
"""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple

import pytest

BATCH = 64
OOB_THRESHOLD = 4096  # Transport(oob_threshold=4096), the default
ASK, SEND = 0, 1      # the first two envelope kinds


class EnvelopeNT(NamedTuple):
    kind: int
    to: Any
    frm: Any
    op: Any
    payload: Any
    corr: int
    reply_rank: int
    ctx: Any


def _fields(i: int) -> tuple:
    """Realistic fields: asks from a driver to 8 workers on rank 1, each with a small
    payload, a correlation id, the reply rank and a request context."""
    return (ASK, f"worker-{i % 8}@1", "$driver@0", "infer",
            {"request_id": f"req-{i}", "rows": 64, "kb": 0.5}, 1000 + i, 0,
            ("tenant-a", "default", "svc-frontend"))


def _tuple(i):
    kind, to, frm, op, payload, corr, rr, ctx = _fields(i)
    return (kind, to, frm, op, payload, corr, rr, ctx)


def _namedtuple(i):
    return EnvelopeNT(*_fields(i))


def _dict(i):
    return dict(zip(EnvelopeNT._fields, _fields(i)))


BUILD = {"tuple": _tuple, "namedtuple": _namedtuple, "dict": _dict}


@pytest.mark.parametrize("form", list(BUILD))
def test_build(benchmark, form):
    benchmark.group = "envelope build x64"
    make = BUILD[form]
    batch = benchmark(lambda: [make(i) for i in range(BATCH)])
    assert len(batch) == BATCH


def _keep_large(pb) -> bool:
    """Transport._keep_large: True keeps a buffer in band; the small payloads here never
    reach the threshold, so every batch goes in band (TAG_BATCH)."""
    if pb.raw().nbytes < OOB_THRESHOLD:
        return True
    raise AssertionError("a buffer this file does not expect to go out of band")


def _dumps(batch) -> bytes:
    return pickle.dumps(batch, 5, buffer_callback=_keep_large)  # as Transport._send_batch


def _roundtrip_batch(batch):
    return pickle.loads(_dumps(batch))  # as Transport.poll for TAG_BATCH


def _roundtrip_each(batch):
    return [pickle.loads(_dumps(env)) for env in batch]


@pytest.mark.parametrize("how", ["tuple batch", "namedtuple batch", "tuple one by one"])
def test_batch_roundtrip(benchmark, how):
    benchmark.group = f"envelope pickle dumps+loads x{BATCH}"
    batch = [(_namedtuple if how.startswith("namedtuple") else _tuple)(i)
             for i in range(BATCH)]
    fn = _roundtrip_each if how.endswith("one by one") else _roundtrip_batch
    benchmark.extra_info["bytes"] = (sum(len(_dumps(e)) for e in batch)
                                     if fn is _roundtrip_each else len(_dumps(batch)))
    assert benchmark(fn, batch) == batch


@pytest.mark.parametrize("form", ["tuple", "namedtuple"])
def test_batch_dumps(benchmark, form):
    benchmark.group = f"envelope pickle dumps x{BATCH}"
    batch = [BUILD[form](i) for i in range(BATCH)]
    data = benchmark(_dumps, batch)
    benchmark.extra_info["bytes"] = len(data)


@pytest.mark.parametrize("form", ["tuple", "namedtuple"])
def test_batch_loads(benchmark, form):
    benchmark.group = f"envelope pickle loads x{BATCH}"
    batch = [BUILD[form](i) for i in range(BATCH)]
    assert benchmark(pickle.loads, _dumps(batch)) == batch
