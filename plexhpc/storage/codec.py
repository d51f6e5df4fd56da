"""Plain-data encoding and signed envelopes for everything plexhpc stores.

Checkpoints, KV values, channel payloads and timer payloads are never pickles: a pickle
runs code when loaded, so a tampered or foreign state file becomes code execution
(LangGraph shipped three CVEs that way). Instead:

* :func:`encode` / :func:`decode` turn plain data into bytes and back: a version byte,
  then msgpack, with extension types for what msgpack lacks (tuple, set, frozenset,
  numpy arrays and scalars, integers beyond 64 bits). Anything else (functions, class
  instances, datetimes, ...) is refused at encode time with the path to the offending
  part. :func:`decode` builds only those plain types: it never imports or calls
  anything named by the data.
* :func:`seal` / :func:`unseal` wrap bytes in an HMAC-SHA256-signed envelope::

      b"PLXS" | version (1 byte) | kind length (1 byte) | kind | HMAC (32 bytes)
             | payload length (8 bytes, big-endian) | payload

  The HMAC covers every byte but itself, so a flipped bit, a truncated file, a blob of
  another kind or one signed with another deployment's key is refused
  (:class:`~plexhpc.errors.CheckpointRejected`) before anything is decoded.

Sets and frozensets encode canonically (elements sorted by their encoding), so equal
values give equal bytes and compare-and-set on encoded bytes works for them. Dicts keep
their insertion order (two dicts with the same items in another order encode
differently).
"""

from __future__ import annotations

import hmac
import re
import struct
import threading

import msgpack
import numpy as np

from ..errors import CheckpointRejected, InvalidMessage

__all__ = ["encode", "decode", "seal", "unseal", "CODEC_VERSION", "SEAL_VERSION", "MAGIC"]

#: first byte of every :func:`encode` output
CODEC_VERSION = 1
#: the envelope format :func:`seal` writes and :func:`unseal` reads
SEAL_VERSION = 1
MAGIC = b"PLXS"

_PREFIX = bytes([CODEC_VERSION])
_MAC_LEN = 32
_LEN = struct.Struct(">Q")
_MIN_KEY_LEN = 16

_EXT_TUPLE = 1
_EXT_SET = 2
_EXT_FROZENSET = 3
_EXT_NDARRAY = 4
_EXT_NPSCALAR = 5
_EXT_BIGINT = 6

# bool, signed/unsigned int, float, complex, bytes, str, timedelta, datetime:
# fixed-size kinds whose raw buffer is the whole value (no objects, no fields)
_ARRAY_KINDS = frozenset("biufcSUmM")
_DTYPE_STR = re.compile(r"[<>|=][biufcSUmM][0-9]{1,6}(\[[0-9]{0,6}[A-Za-z]{1,3}\])?")
_HEX_INT = re.compile(r"-?[0-9a-f]+")
_MAX_NDIM = 64

_HINT = "store plain data (dict/list/str/int/float/bytes/numpy arrays)"


# --- encode -------------------------------------------------------------------------

class _Refused(TypeError):
    """Raised inside msgpack's ``default`` hook; :func:`encode` replaces it with a
    message that names the path."""


class _TooDeep(ValueError):
    """Raised by the pre-check; :func:`encode` says where (or that the value loops)."""


def _pack(obj) -> bytes:
    return msgpack.packb(obj, default=_default, strict_types=True, use_bin_type=True)


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _canonical_set(items) -> bytes:
    packed = sorted(_pack(x) for x in items)
    return _array_header(len(packed)) + b"".join(packed)


def _dtype_ok(dt: np.dtype) -> bool:
    return dt.kind in _ARRAY_KINDS and dt.fields is None and dt.subdtype is None


#: how deep tuples and sets may nest in one another: each level is a nested msgpack
#: call on the C stack, and too many crash the process instead of raising
_MAX_EXT_NEST = 32
_tls = threading.local()


def _nest():
    d = getattr(_tls, "depth", 0)
    if d >= _MAX_EXT_NEST:
        return None
    _tls.depth = d + 1
    return d


def _check_plain(value, path: str, depth: int = 0) -> None:
    """Refuse what msgpack would pack natively but this codec cannot read back (its own
    ExtType and Timestamp), and nesting deeper than a stored value may be."""
    t = type(value)
    if t in _FAST_LEAVES:
        return
    if depth > _MAX_DEPTH:
        raise _TooDeep("nesting")  # encode() finds out where (or that it loops)
    if t is list or t is tuple or t is set or t is frozenset:
        for i, x in enumerate(value):
            if type(x) not in _FAST_LEAVES:
                _check_plain(x, f"{path}[{i}]", depth + 1)
    elif t is dict:
        for k, x in value.items():
            if type(k) not in _FAST_LEAVES:
                _check_plain(k, f"{path} key {k!r}", depth + 1)
            if type(x) not in _FAST_LEAVES:
                _check_plain(x, f"{path}[{k!r}]", depth + 1)
    elif isinstance(value, (msgpack.ExtType, msgpack.Timestamp)):
        raise TypeError(f"{path}: cannot store object of type {t.__name__}; {_HINT}")


_FAST_LEAVES = frozenset({type(None), bool, int, float, str, bytes})


def _default(obj):
    t = type(obj)
    if t is tuple or t is set or t is frozenset:
        d = _nest()
        if d is None:
            raise ValueError(f"tuples and sets nest more than {_MAX_EXT_NEST} levels deep")
        try:
            if t is tuple:
                return msgpack.ExtType(_EXT_TUPLE, _pack(list(obj)))
            return msgpack.ExtType(_EXT_SET if t is set else _EXT_FROZENSET,
                                   _canonical_set(obj))
        finally:
            _tls.depth = d
    if t is int:  # msgpack calls us only for ints outside the 64-bit range
        return msgpack.ExtType(_EXT_BIGINT, format(obj, "x").encode("ascii"))
    if t is np.ndarray:
        if not _dtype_ok(obj.dtype) or (obj.dtype.itemsize == 0 and obj.size):
            raise _Refused("array dtype")
        return msgpack.ExtType(_EXT_NDARRAY, _pack(
            [obj.dtype.str, list(obj.shape), obj.tobytes(order="C")]))
    if isinstance(obj, np.generic):
        if not _dtype_ok(obj.dtype):
            raise _Refused("scalar dtype")
        buf = obj.tobytes() if obj.dtype.itemsize else b""  # np.str_("") has 4 bytes
        return msgpack.ExtType(_EXT_NPSCALAR, _pack([obj.dtype.str, buf]))
    raise _Refused(t.__name__)


def encode(value, *, name: str = "value") -> bytes:
    """Encode plain data to bytes that :func:`decode` turns back into an equal value.

    Supported: None, bool, int (any size), float (nan/inf too), str, bytes, list, tuple,
    dict (any supported hashable keys, tuples included), set, frozenset, numpy arrays of
    bool/number/str/bytes/datetime dtypes (any shape, contiguous or not) and numpy
    scalars. ``name`` is how the value is called in error messages.

    Raises ``TypeError`` naming the path to the first unsupported part, e.g.
    ``state['cache'][3]: cannot store object of type Foo; ...``, and ``ValueError`` for
    a value that contains itself or nests too deeply.
    """
    try:
        _check_plain(value, name)
        return _PREFIX + _pack(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        if type(exc) is TypeError and str(exc).startswith(name):
            raise  # _check_plain's own message already names the path
        problem = _locate(value, name)
        if problem is None:  # not found by the walk: report what msgpack said
            if isinstance(exc, (RecursionError, ValueError)):
                raise ValueError(f"{name}: nests too deeply to store ({exc}); store a "
                                 f"flatter structure") from None
            raise TypeError(f"{name}: cannot be stored ({exc}); {_HINT}") from None
        cls, message = problem
        raise cls(message) from None


_PLAIN_LEAVES = (type(None), bool, int, float, bytes, bytearray, memoryview)
_MAX_DEPTH = 200


def _locate(value, path: str):
    """Walk ``value`` to find what :func:`encode` could not store.

    Returns ``(exception class, message)`` or None. Only runs after an encode failed,
    so it may be slow."""
    on_path: set[int] = set()

    def walk(v, p, depth):
        t = type(v)
        if t in _PLAIN_LEAVES:
            return None
        if t is str:
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return TypeError, (f"{_short(p)}: str with a lone surrogate cannot be stored; "
                                   f"store valid text, or bytes")
            return None
        if t is np.ndarray or isinstance(v, np.generic):
            if not _dtype_ok(v.dtype):
                what = "an array" if t is np.ndarray else "a numpy scalar"
                return TypeError, (f"{_short(p)}: cannot store {what} of dtype {v.dtype} "
                                   f"(object and structured dtypes can hold anything); "
                                   f"store a numeric/str/bytes array, or plain lists")
            return None
        if t not in (list, tuple, dict, set, frozenset):
            if isinstance(v, np.ndarray):
                hint = "convert it with numpy.asarray(...)"
            elif isinstance(v, (dict, list, tuple, set, frozenset, str, int, float, bytes)):
                hint = f"convert it to a plain {_plain_base(v)} first"
            else:
                hint = _HINT
            return TypeError, f"{_short(p)}: cannot store object of type {t.__name__}; {hint}"
        if depth > _MAX_DEPTH:
            return ValueError, f"{_short(p)}: nests too deeply to store; store a flatter structure"
        if id(v) in on_path:
            return ValueError, (f"{_short(p)}: contains itself (a reference cycle); "
                                f"store a tree of plain data")
        on_path.add(id(v))
        try:
            if t is dict:
                for k, item in v.items():
                    found = walk(k, f"{p} key {_r(k)}", depth + 1)
                    if found is None:
                        found = walk(item, f"{p}[{_r(k)}]", depth + 1)
                    if found is not None:
                        return found
            elif t in (set, frozenset):
                for item in v:
                    found = walk(item, f"{p} element {_r(item)}", depth + 1)
                    if found is not None:
                        return found
            else:
                for i, item in enumerate(v):
                    found = walk(item, f"{p}[{i}]", depth + 1)
                    if found is not None:
                        return found
        finally:
            on_path.discard(id(v))
        return None

    try:
        return walk(value, path, 0)
    except RecursionError:
        return ValueError, f"{path}: nests too deeply to store; store a flatter structure"


def _r(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _short(path: str) -> str:
    """A path for a message: very deep ones keep their start and end."""
    return path if len(path) <= 200 else f"{path[:80]}...{path[-100:]}"


def _plain_base(v) -> str:
    for base in (bool, int, float, str, bytes, dict, list, tuple, frozenset, set):
        if isinstance(v, base):
            return base.__name__
    return "value"


# --- decode -------------------------------------------------------------------------

class _Malformed(Exception):
    pass


def _unpack(data):
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False,
                           use_list=True)


def _unpack_list(data) -> list:
    items = _unpack(data)
    if type(items) is not list:
        raise _Malformed("extension payload is not a list")
    return items


def _dtype_from(s) -> np.dtype:
    if type(s) is not str or not _DTYPE_STR.fullmatch(s):
        raise _Malformed(f"bad dtype {s!r}")
    dt = np.dtype(s)
    if not _dtype_ok(dt):
        raise _Malformed(f"dtype {s!r} is not allowed")
    return dt


def _ext_hook(code: int, data: bytes):
    if code in (_EXT_TUPLE, _EXT_SET, _EXT_FROZENSET, _EXT_NDARRAY, _EXT_NPSCALAR):
        d = _nest()
        if d is None:
            raise _Malformed(f"extensions nest more than {_MAX_EXT_NEST} levels deep")
        try:
            return _ext_value(code, data)
        finally:
            _tls.depth = d
    return _ext_value(code, data)


def _check_text_codes(buf: bytes, dt: np.dtype) -> None:
    """A str array's raw buffer must hold valid code points (numpy trusts it, and an
    invalid one fails later, far from here, with a SystemError)."""
    order = dt.byteorder if dt.byteorder in "<>" else "="
    codes = np.frombuffer(buf, dtype=np.dtype(order + "u4"))
    if codes.size and (int(codes.max()) > 0x10FFFF
                       or bool(((codes >= 0xD800) & (codes <= 0xDFFF)).any())):
        raise _Malformed("a str array holds invalid code points")


def _ext_value(code: int, data: bytes):
    if code == _EXT_TUPLE:
        return tuple(_unpack_list(data))
    if code == _EXT_SET:
        return set(_unpack_list(data))
    if code == _EXT_FROZENSET:
        return frozenset(_unpack_list(data))
    if code == _EXT_BIGINT:
        text = data.decode("ascii")
        if not _HEX_INT.fullmatch(text):
            raise _Malformed("bad big integer")
        return int(text, 16)
    if code == _EXT_NDARRAY:
        parts = _unpack_list(data)
        if len(parts) != 3:
            raise _Malformed("array needs dtype, shape, buffer")
        dts, shape, buf = parts
        dt = _dtype_from(dts)
        if (type(shape) is not list or len(shape) > _MAX_NDIM
                or any(type(n) is not int or n < 0 for n in shape)):
            raise _Malformed(f"bad array shape {shape!r}")
        if type(buf) is not bytes:
            raise _Malformed("array buffer is not bytes")
        count = 1
        for n in shape:
            count *= n
        if count * dt.itemsize != len(buf):
            raise _Malformed(f"array buffer holds {len(buf)} bytes, "
                             f"shape {tuple(shape)} of {dt} needs {count * dt.itemsize}")
        if dt.itemsize == 0 and count:
            raise _Malformed(f"array of {count} elements of the empty dtype {dt}")
        if dt.kind == "U":
            _check_text_codes(buf, dt)
        elif dt.kind == "b" and buf.translate(None, b"\x00\x01"):
            raise _Malformed("a bool array holds bytes other than 0 and 1")
        if count == 0:
            return np.zeros(tuple(shape), dtype=dt)
        return np.frombuffer(bytearray(buf), dtype=dt).reshape(shape)
    if code == _EXT_NPSCALAR:
        parts = _unpack_list(data)
        if len(parts) != 2:
            raise _Malformed("numpy scalar needs dtype, buffer")
        dts, buf = parts
        dt = _dtype_from(dts)
        if type(buf) is not bytes or len(buf) != dt.itemsize:
            raise _Malformed("numpy scalar buffer has the wrong size")
        if dt.kind == "U":
            _check_text_codes(buf, dt)
        elif dt.kind == "b" and buf.translate(None, b"\x00\x01"):
            raise _Malformed("a bool scalar holds a byte other than 0 and 1")
        if dt.itemsize == 0:
            return np.zeros((), dtype=dt)[()]
        return np.frombuffer(buf, dtype=dt)[0]
    raise _Malformed(f"unknown extension type {code}")


def decode(data: bytes):
    """Turn :func:`encode` output back into the value. Builds only plain types.

    Raises :class:`~plexhpc.errors.CheckpointRejected` (a ``ValueError``) for bytes that
    are not a valid encoding or come from an unknown encoding version."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode() takes bytes, got {type(data).__name__}")
    if len(data) < 2:
        raise CheckpointRejected(f"stored value is {len(data)} byte(s) long: truncated; "
                                 f"refused")
    if data[0] != CODEC_VERSION:
        raise CheckpointRejected(
            f"stored value uses encoding version {data[0]}, this plexhpc reads version "
            f"{CODEC_VERSION}: written by another plexhpc version, or not a plexhpc "
            f"value; refused")
    try:
        value = _unpack(memoryview(data)[1:])
        if type(value) not in _FAST_LEAVES:
            _check_decoded(value)
        return value
    except CheckpointRejected:
        raise
    except Exception as exc:  # malformed msgpack, bad extension, unhashable key, ...
        raise CheckpointRejected(f"stored value is malformed ({type(exc).__name__}: "
                                 f"{exc}); refused, nothing was loaded") from None


def _check_decoded(value) -> None:
    """msgpack turns its own timestamp extension into a Timestamp object before our
    hook sees it: refuse any, so decode returns plain types only."""
    t = type(value)
    if t is list or t is tuple or t is set or t is frozenset:
        for x in value:
            if type(x) not in _FAST_LEAVES:
                _check_decoded(x)
    elif t is dict:
        for k, x in value.items():
            if type(k) not in _FAST_LEAVES:
                _check_decoded(k)
            if type(x) not in _FAST_LEAVES:
                _check_decoded(x)
    elif t is msgpack.Timestamp or t is msgpack.ExtType:
        raise _Malformed(f"a {t.__name__} is not a value this codec stores")


# --- seal / unseal --------------------------------------------------------------------

def check_key(key) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"signing key must be bytes, got {type(key).__name__}; "
                        f"use plexhpc.storage.load_or_create_key()")
    if len(key) < _MIN_KEY_LEN:
        raise InvalidMessage(f"signing key is {len(key)} bytes, at least {_MIN_KEY_LEN} "
                             f"are needed; use plexhpc.storage.load_or_create_key()")


def _kind_bytes(kind) -> bytes:
    if type(kind) is not str or not kind:
        raise InvalidMessage(f"kind must be a non-empty str such as 'checkpoint', "
                             f"got {kind!r}")
    raw = kind.encode("utf-8")
    if len(raw) > 255:
        raise InvalidMessage(f"kind {kind[:40]!r}... is {len(raw)} bytes long, "
                             f"at most 255")
    return raw


def seal(payload: bytes, key: bytes, kind: str) -> bytes:
    """Wrap ``payload`` in a signed envelope of the given ``kind`` (e.g. "checkpoint").

    Only :func:`unseal` with the same key and kind gives the payload back."""
    check_key(key)
    if not isinstance(payload, (bytes, bytearray)):
        raise TypeError(f"seal() takes the payload as bytes, got {type(payload).__name__}")
    kb = _kind_bytes(kind)
    header = MAGIC + bytes((SEAL_VERSION, len(kb))) + kb
    length = _LEN.pack(len(payload))
    mac = hmac.digest(key, header + length + payload, "sha256")
    return b"".join((header, mac, length, payload))


def unseal(blob: bytes, key: bytes, kind: str) -> bytes:
    """Check a :func:`seal` envelope and return its payload.

    Raises :class:`~plexhpc.errors.CheckpointRejected` if the blob is truncated, is not
    a plexhpc envelope, has an unknown format version, was signed with another key or
    modified, or is of another kind. Nothing in a refused blob is decoded."""
    check_key(key)
    kb = _kind_bytes(kind)
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"unseal() takes bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    n = len(blob)
    if n < 6:
        raise CheckpointRejected(f"{kind} is only {n} byte(s) long: truncated or empty; "
                                 f"refused, not loaded")
    if blob[:4] != MAGIC:
        raise CheckpointRejected(f"not a plexhpc {kind}: it starts with {blob[:4]!r}, "
                                 f"not {MAGIC!r} (written by another program?); refused")
    version = blob[4]
    if version != SEAL_VERSION:
        raise CheckpointRejected(
            f"{kind} has envelope format version {version}, this plexhpc reads version "
            f"{SEAL_VERSION} (written by another plexhpc version); refused, not loaded")
    head_len = 6 + blob[5]
    body = head_len + _MAC_LEN + _LEN.size
    if n < body:
        raise CheckpointRejected(f"{kind} is truncated: {n} bytes, its header alone needs "
                                 f"{body}; refused, not loaded")
    (declared,) = _LEN.unpack_from(blob, head_len + _MAC_LEN)
    if n - body < declared:
        raise CheckpointRejected(f"{kind} is truncated: its header promises {declared} "
                                 f"payload bytes, {n - body} are present; refused, "
                                 f"not loaded")
    if n - body > declared:
        raise CheckpointRejected(f"{kind} has {n - body - declared} unexpected bytes after "
                                 f"its payload: modified; refused, not loaded")
    header = blob[:head_len]
    mac = blob[head_len:head_len + _MAC_LEN]
    want = hmac.digest(key, header + blob[head_len + _MAC_LEN:], "sha256")
    if not hmac.compare_digest(mac, want):
        raise CheckpointRejected(f"{kind} signature mismatch: signed with another key or "
                                 f"modified: refused, not loaded")
    if blob[6:head_len] != kb:
        found = blob[6:head_len].decode("utf-8", "replace")
        raise CheckpointRejected(f"expected a {kind!r} blob, this one is a {found!r}: "
                                 f"refused, not loaded")
    return blob[body:]
