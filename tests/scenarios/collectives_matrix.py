"""Every collective x op x dtype x shape family against numpy, at any rank count.

Each rank builds every rank's inputs from a deterministic generator, so the expected
result is computed locally with numpy (and also checked against a gather of the real
inputs). Failures are collected on every rank and gathered to rank 0, which prints one
RESULT line: {"checked": N, "failures": [...]} — the same file passes at 1, 2 or 4 ranks.
"""

import json
import sys
import traceback

import numpy as np
from mpi4py import MPI

from plexhpc import collectives as C
from plexhpc.collectives.ops import resolve_op, work_dtype

comm = MPI.COMM_WORLD
RANK, SIZE = comm.Get_rank(), comm.Get_size()
DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
          np.uint64, np.float32, np.float64, np.complex64, np.complex128]
OPS = ["sum", "prod", "min", "max", "mean", "land", "lor", "band", "bor", "bxor", "minloc",
       "maxloc", "absmax"]
failures: list = []
checked = 0


@C.reduction
def absmax(a, b):
    """Larger magnitude wins; ties go to the larger value (so the op commutes)."""
    if abs(a) > abs(b):
        return a
    if abs(b) > abs(a):
        return b
    return max(a, b)


def make(dtype, shape, rank, case):
    rng = np.random.default_rng(10_000 * case + 97 * rank + 1)
    dt = np.dtype(dtype)
    n = int(np.prod(shape)) if shape else 1
    if dt.kind == "b":
        flat = rng.integers(0, 2, n).astype(bool)
    elif dt.kind == "u":
        flat = rng.integers(0, 4, n).astype(dt)
    elif dt.kind == "i":
        flat = rng.integers(-3, 4, n).astype(dt)
    elif dt.kind == "f":
        flat = rng.normal(size=n).astype(dt)
    else:
        flat = (rng.normal(size=n) + 1j * rng.normal(size=n)).astype(dt)
    return flat.reshape(shape)


def shapes():
    yield "empty", (0,), None
    yield "0d", (), None
    yield "odd", (7,), None
    yield "noncontig", (5, 6), (slice(None), slice(None, None, 2))


def inputs(dtype, shape, cut, case):
    xs = [make(dtype, shape, r, case) for r in range(SIZE)]
    if cut is not None:
        xs = [x[cut] for x in xs]
    return xs


def expected(op, xs):
    stack = np.stack(xs)
    spec = resolve_op(op if op != "absmax" else absmax)
    wd = work_dtype(spec, stack.dtype)
    if op in ("sum", "prod"):
        f = np.add if op == "sum" else np.multiply
        return f.reduce(stack.astype(wd), axis=0, dtype=wd)
    if op == "mean":
        return (np.add.reduce(stack.astype(wd), axis=0) / SIZE).astype(wd)
    if op in ("min", "max"):
        return stack.min(axis=0) if op == "min" else stack.max(axis=0)
    if op == "land":
        return np.logical_and.reduce(stack.astype(bool), axis=0)
    if op == "lor":
        return np.logical_or.reduce(stack.astype(bool), axis=0)
    if op in ("band", "bor", "bxor"):
        f = {"band": np.bitwise_and, "bor": np.bitwise_or, "bxor": np.bitwise_xor}[op]
        return f.reduce(stack, axis=0)
    if op in ("minloc", "maxloc"):
        return ((stack.min(axis=0), stack.argmin(axis=0)) if op == "minloc"
                else (stack.max(axis=0), stack.argmax(axis=0)))
    acc = stack[0].copy()
    for x in stack[1:]:
        acc = np.where(np.abs(acc) > np.abs(x), acc,
                       np.where(np.abs(x) > np.abs(acc), x, np.maximum(acc, x)))
    return acc


def valid(op, dtype) -> bool:
    if op == "absmax" and np.dtype(dtype).kind in "bc":
        return None  # the test's user op is for real numbers only: not a library limit
    try:
        work_dtype(resolve_op(op if op != "absmax" else absmax), np.dtype(dtype))
        return True
    except ValueError:
        return False


def close(got, want, label):
    global checked
    checked += 1
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        failures.append(f"{label}: got {got.dtype}{got.shape}, want {want.dtype}{want.shape}")
        return
    if want.dtype.kind in "fc":
        tol = 1e-4 if want.dtype in (np.float32, np.complex64) else 1e-9
        ok = np.allclose(got, want, rtol=tol, atol=tol)
    else:
        ok = np.array_equal(got, want)
    if not ok:
        failures.append(f"{label}: values differ: got {got.ravel()[:4]}, want {want.ravel()[:4]}")


def expect_error(kind, fn, label, needle=""):
    global checked
    checked += 1
    try:
        fn()
    except kind as exc:
        if needle and needle not in str(exc):
            failures.append(f"{label}: {kind.__name__} without {needle!r}: {exc}")
        return
    except Exception as exc:  # noqa: BLE001
        failures.append(f"{label}: expected {kind.__name__}, got {type(exc).__name__}: {exc}")
        return
    failures.append(f"{label}: expected {kind.__name__}, nothing raised")


def guarded(label, fn):
    try:
        fn()
    except Exception:  # noqa: BLE001 - record and go on: the others must stay in step
        failures.append(f"{label}: raised {traceback.format_exc(limit=3)}")


def reductions():
    case = 0
    for dtype in DTYPES:
        for sname, shape, cut in shapes():
            for op in OPS:
                case += 1
                xs = inputs(dtype, shape, cut, case)
                mine = xs[RANK]
                label = f"{op}/{np.dtype(dtype).name}/{sname}"
                opv = absmax if op == "absmax" else op
                ok = valid(op, dtype)
                if ok is None:
                    continue
                if not ok:
                    expect_error(ValueError, lambda: C.allreduce(mine, opv), f"allreduce {label}")
                    continue
                want = expected(op, xs)
                got = C.allreduce(mine, opv)
                if op in ("minloc", "maxloc"):
                    close(got[0], want[0], f"allreduce {label} values")
                    close(got[1], want[1], f"allreduce {label} ranks")
                else:
                    close(got, want, f"allreduce {label}")
                for root in range(SIZE):
                    got = C.reduce(mine, opv, root=root)
                    if RANK != root:
                        if got is not None:
                            failures.append(f"reduce {label} root {root}: non-root got {got!r}")
                    elif op not in ("minloc", "maxloc"):
                        close(got, want, f"reduce {label} root {root}")
    # 8 MB float64 for a few ops, plus in-place and out=
    big = [make(np.float64, (1 << 20,), r, 999) for r in range(SIZE)]
    for op in ("sum", "max", "absmax"):
        close(C.allreduce(big[RANK], absmax if op == "absmax" else op),
              expected(op, big), f"allreduce {op}/float64/8MB")
    buf = big[RANK].copy()
    res = C.allreduce(buf, "sum", inplace=True)
    close(buf, expected("sum", big), "allreduce inplace 8MB")
    checked_same = res is buf
    if not checked_same:
        failures.append("inplace did not return the caller's array")
    out = np.empty(1 << 20)
    C.allreduce(big[RANK], out=out)
    close(out, expected("sum", big), "allreduce out= 8MB")


def scalars_and_trees():
    close(C.allreduce(RANK + 1), sum(range(1, SIZE + 1)), "allreduce int scalar")
    if not isinstance(C.allreduce(RANK + 1), int):
        failures.append("allreduce of an int did not return an int")
    close(C.allreduce(0.5 * RANK, "max"), 0.5 * (SIZE - 1), "allreduce float max")
    got = C.allreduce(RANK == 0, "lor")
    if got is not True:
        failures.append(f"allreduce bool lor returned {got!r}")
    close(C.allreduce(np.float32(RANK)), np.float32(sum(range(SIZE))), "numpy scalar")
    tree = {"w1": np.full((3, 4), RANK, np.float64), "b1": np.arange(4, dtype=np.float32) * RANK,
            "meta": [RANK, (np.int64(2), 1.5)], "w2": np.ones((2, 2))[:, ::2] * RANK}
    want_sum = sum(range(SIZE))
    got = C.allreduce(tree)
    close(got["w1"], np.full((3, 4), want_sum, np.float64), "tree w1")
    close(got["b1"], np.arange(4, dtype=np.float32) * want_sum, "tree b1")
    close(got["meta"][0], want_sum, "tree int leaf")
    close(got["meta"][1][0], np.int64(2 * SIZE), "tree numpy-scalar leaf")
    close(got["meta"][1][1], 1.5 * SIZE, "tree float leaf")
    close(got["w2"], np.ones((2, 1)) * want_sum, "tree noncontig leaf")
    if list(got) != ["w1", "b1", "meta", "w2"] or not isinstance(got["meta"][1], tuple):
        failures.append(f"tree structure lost: {got!r}")
    for root in range(SIZE):
        r = C.reduce(tree, "max", root=root)
        if RANK == root:
            close(r["w1"], np.full((3, 4), SIZE - 1, np.float64), f"tree reduce root {root}")
    g = {"a": np.full(5, float(RANK)), "b": np.full(3, 2.0 * RANK)}
    C.allreduce(g, "mean", inplace=True)
    close(g["a"], np.full(5, (SIZE - 1) / 2), "tree inplace mean a")
    close(g["b"], np.full(3, SIZE - 1.0), "tree inplace mean b")
    # several local contributions (shards on this rank) equal the flat reduction
    k = RANK + 1  # ranks hold different numbers of shards
    contribs = [np.full(4, float(10 * RANK + j)) for j in range(k)]
    flat_vals = [float(10 * r + j) for r in range(SIZE) for j in range(r + 1)]
    close(C.allreduce(contribs, local=True), np.full(4, sum(flat_vals)), "local sum")
    close(C.allreduce(contribs, "mean", local=True), np.full(4, np.mean(flat_vals)), "local mean")
    close(C.allreduce(contribs, "max", local=True), np.full(4, max(flat_vals)), "local max")
    vals, locs = C.allreduce(contribs, "minloc", local=True)
    close(locs, np.zeros(4, np.int64), "local minloc location")
    trees = [{"x": np.full(2, float(j + RANK))} for j in range(k)]
    close(C.allreduce(trees, local=True)["x"],
          np.full(2, sum(float(j + r) for r in range(SIZE) for j in range(r + 1))), "local trees")
    close(C.allreduce(contribs, absmax, local=True),
          np.full(4, max(flat_vals, key=abs)), "local user op")
    # pooled result buffers: a result the caller keeps (or a view of it) is never reused
    big = np.full(1 << 17, 1.0)
    r1 = C.allreduce(big)
    r2 = C.allreduce(big * 2)
    view = r2[5:]
    del r2
    r3 = C.allreduce(big * 3)
    close(r1, np.full(1 << 17, 1.0 * SIZE), "kept result 1 intact")
    close(view, np.full((1 << 17) - 5, 2.0 * SIZE), "view of a dropped result intact")
    close(r3, np.full(1 << 17, 3.0 * SIZE), "third result")
    kept = [C.allreduce({"w": big * k}) for k in range(6)]  # more than the pool holds
    for k, t in enumerate(kept):
        close(t["w"], np.full(1 << 17, float(k * SIZE)), f"kept pytree result {k}")
    b1 = C.broadcast(big * 7 if RANK == 0 else None)
    b2 = C.broadcast(big * 8 if RANK == 0 else None)
    close(b1, np.full(1 << 17, 7.0), "kept broadcast result")
    close(b2, np.full(1 << 17, 8.0), "second broadcast result")
    # objects: slow path
    got = C.allreduce(f"r{RANK}", "sum")
    if got != "".join(f"r{r}" for r in range(SIZE)):
        failures.append(f"object sum: {got!r}")
    checked_objects = C.allreduce({"n": RANK}, "max") if False else None


def broadcasts_scatters_gathers():
    case = 5000
    for dtype in DTYPES:
        for sname, shape, cut in shapes():
            case += 1
            xs = inputs(dtype, shape, cut, case)
            label = f"{np.dtype(dtype).name}/{sname}"
            for root in range(SIZE):
                got = C.broadcast(xs[root] if RANK == root else None, root=root)
                close(got, np.array(xs[root], order="C"), f"broadcast {label} root {root}")
                g = C.gather(xs[RANK], root=root)
                if RANK == root:
                    for r in range(SIZE):
                        close(g[r], xs[r], f"gather {label} root {root} from {r}")
                elif g is not None:
                    failures.append(f"gather {label}: non-root got {g!r}")
                stacked = np.stack([make(dtype, shape, r, case) for r in range(SIZE)])
                part = C.scatter(stacked if RANK == root else None, root=root)
                close(part, stacked[RANK], f"scatter split {label} root {root}")
                part = C.scatter(list(xs) if RANK == root else None, root=root)
                close(part, xs[RANK], f"scatter list {label} root {root}")
            ag = C.allgather(xs[RANK])
            for r in range(SIZE):
                close(ag[r], xs[r], f"allgather {label} from {r}")
    big = np.arange(1 << 20, dtype=np.float64)
    close(C.broadcast(big if RANK == 0 else None), big, "broadcast 8MB")
    out = np.empty(1 << 20)
    C.broadcast(big if RANK == 0 else None, out=out if RANK else None)
    close(out if RANK else big, big, "broadcast out=")
    tree = {"w": np.full((2, 3), 7.0), "steps": [1, 2], "name": np.int32(3)}
    got = C.broadcast(tree if RANK == 0 else None)
    close(got["w"], tree["w"], "broadcast tree")
    if got["steps"] != [1, 2] or not isinstance(got["steps"][0], int):
        failures.append(f"broadcast tree scalars: {got['steps']!r}")
    big_tree = {f"layer{i}": np.full(3, float(i)) for i in range(200)}  # meta > header
    got = C.broadcast(big_tree if RANK == 0 else None)
    close(got["layer199"], np.full(3, 199.0), "broadcast big tree")
    got = C.broadcast({"cfg": "text", "n": None} if RANK == 0 else None)
    if got != {"cfg": "text", "n": None}:
        failures.append(f"broadcast object: {got!r}")
    ragged = C.allgather(np.arange(RANK + 1, dtype=np.int32))
    for r in range(SIZE):
        close(ragged[r], np.arange(r + 1, dtype=np.int32), f"allgather ragged {r}")
    items = C.allgather({"rank": RANK, "arr": np.ones(2) * RANK})
    if [i["rank"] for i in items] != list(range(SIZE)):
        failures.append(f"allgather trees: {items!r}")
    got = C.scatter([{"i": i} for i in range(SIZE)] if RANK == 0 else None)
    if got != {"i": RANK}:
        failures.append(f"scatter objects: {got!r}")
    got = C.scatter([i * 1.5 for i in range(SIZE)] if RANK == 0 else None)
    if got != RANK * 1.5 or not isinstance(got, float):
        failures.append(f"scatter floats: {got!r}")
    res = C.scatter_gather(lambda p: p * p, list(range(SIZE)) if RANK == 0 else None)
    if RANK == 0 and res != [i * i for i in range(SIZE)]:
        failures.append(f"scatter_gather: {res!r}")
    C.barrier()


def errors():
    if SIZE > 1:
        expect_error(C.CollectiveMismatch, lambda: C.allreduce(np.ones(3 + RANK)),
                     "shape mismatch", "rank(s) [0] passed float64[3]")
        expect_error(C.CollectiveMismatch,
                     lambda: C.allreduce(np.ones(3, np.float32 if RANK else np.float64)),
                     "dtype mismatch", "float32")
        expect_error(C.CollectiveMismatch,
                     lambda: C.allreduce({"a": 1.0} if RANK else {"b": 1.0}), "tree mismatch")
        expect_error(C.CollectiveMismatch,
                     lambda: C.allreduce(1.0, "max" if RANK else "min"), "op mismatch")
        bad = (lambda: C.allreduce(1.0, "nope")) if RANK == SIZE - 1 else (
            lambda: C.allreduce(1.0))
        if RANK == SIZE - 1:
            expect_error(ValueError, bad, "unknown op on one rank", "unknown op")
        else:
            expect_error(C.CollectiveAborted, bad, "unknown op seen elsewhere",
                         f"rank {SIZE - 1}")
        expect_error(C.CollectiveMismatch,
                     lambda: C.gather(np.ones(2, np.int32 if RANK else np.int64)),
                     "gather dtype mismatch", "rank(s)")
        if RANK == 0:
            expect_error(ValueError, lambda: C.scatter([1] * (SIZE + 1)), "scatter length")
        else:
            expect_error(C.CollectiveAborted, lambda: C.scatter(None), "scatter length elsewhere",
                         "root rank 0")
        # fn fails on rank 1 only: rank 1 re-raises, root names rank 1, others get None
        try:
            res = C.scatter_gather(lambda p: 1 / (p - 1), list(range(SIZE)) if RANK == 0
                                   else None)
            if RANK in (0, 1) or res is not None:
                failures.append(f"scatter_gather with a failing fn: rank got {res!r}")
        except ZeroDivisionError:
            if RANK != 1:
                failures.append("the wrong rank raised ZeroDivisionError")
        except C.CollectiveAborted as exc:
            if RANK != 0 or "rank 1" not in str(exc) or exc.rank != 1:
                failures.append(f"scatter_gather error: rank {RANK}: {exc}")
        except Exception as exc:  # noqa: BLE001
            failures.append(f"scatter_gather: {type(exc).__name__}: {exc}")
    expect_error(ValueError, lambda: C.allreduce(1.0, "nope"), "unknown op everywhere",
                 "unknown op 'nope'")
    expect_error(ValueError, lambda: C.allreduce(np.ones(2), "band"), "bitwise on floats",
                 "bitwise")
    expect_error(ValueError, lambda: C.allreduce(np.ones(2, complex), "max"), "max on complex")
    expect_error(ValueError, lambda: C.reduce(1.0, root=SIZE), "root out of range", "out of range")
    expect_error(ValueError, lambda: C.broadcast(1.0, root=-1), "bcast root out of range")
    expect_error(ValueError, lambda: C.allreduce(np.ones(3), inplace=True, out=np.ones(3)),
                 "inplace and out")
    expect_error(ValueError, lambda: C.allreduce(np.ones((4, 4))[:, ::2], inplace=True),
                 "inplace non-contiguous")
    expect_error(ValueError, lambda: C.allreduce(np.arange(3), "mean", inplace=True),
                 "inplace mean of ints")
    # the same calls still work afterwards (errors above broke nothing)
    close(C.allreduce(1), SIZE, "after errors")


def timeouts_and_aborts():
    if SIZE == 1:
        return
    # a rank that never arrives: the others time out (on a communicator of its own)
    sub = comm.Dup()
    if RANK != SIZE - 1:
        expect_error(C.CollectiveTimeout, lambda: C.allreduce(1.0, comm=sub, timeout=0.5),
                     "missing rank", "within 0.5 s")
        expect_error(C.CollectiveAborted, lambda: C.allreduce(1.0, comm=sub),
                     "broken after timeout", "unusable")
    # an exception inside a region on one rank: the others fail fast naming it
    sub2 = comm.Dup()
    try:
        with C.region(comm=sub2):
            if RANK == 1:
                raise KeyError("data missing on this rank")
            C.allreduce(np.ones(3), comm=sub2, timeout=30)
        failures.append("region: nothing raised")
    except KeyError:
        if RANK != 1:
            failures.append("region: KeyError on the wrong rank")
    except C.CollectiveAborted as exc:
        if "rank 1" not in str(exc) or "KeyError" not in str(exc) or exc.rank != 1:
            failures.append(f"region: abort lacks the rank: {exc}")
    comm.Barrier()


def main():
    C.compile_all()
    import os
    import time
    only = os.environ.get("MATRIX_ONLY")
    for section in (reductions, scalars_and_trees, broadcasts_scatters_gathers, errors,
                    timeouts_and_aborts):
        if only and section.__name__ != only:
            continue
        t0 = time.perf_counter()
        guarded(section.__name__, section)
        if os.environ.get("MATRIX_VERBOSE"):
            print(f"rank {RANK}: {section.__name__} {time.perf_counter() - t0:.2f}s "
                  f"failures={len(failures)}", file=sys.stderr, flush=True)
    everyone = comm.gather({"rank": RANK, "checked": checked, "failures": failures[:40]}, root=0)
    if RANK == 0:
        print("RESULT " + json.dumps({
            "size": SIZE, "checked": sum(e["checked"] for e in everyone),
            "failures": [f"rank {e['rank']}: {f}" for e in everyone for f in e["failures"]]}),
            flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
