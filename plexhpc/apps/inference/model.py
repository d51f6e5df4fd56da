"""The model served by the parallel-inference benchmark: a seeded float32 ReLU MLP in numpy.

The forward pass is real compute (matrix products through numpy's BLAS), so the benchmark
measures what a worker actually spends, never a synthetic timing. Weights come from
``numpy.random.default_rng(seed)``, so every rank that builds ``MLP(model_type, seed)``
holds the same model, and a reply's :func:`checksum` can be checked against a local one.

Sizes, for one forward pass over the default request (64 rows x 1024 float32 = 256 KiB)
on one core (OpenBLAS single-threaded, AMD EPYC, measured with ``time.perf_counter``):

    small   (1024, 256, 16)                      ~0.4 ms     0.27 M params    1.0 MiB
    medium  (1024, 1024, 1024, 16)               ~3.6 ms     2.12 M params    8.1 MiB
    large   (1024, 2048, 2048, 2048, 2048, 16)   ~25 ms     14.72 M params   56.2 MiB

More BLAS threads make these shorter; the relative spread between sizes is what matters.
"""

from __future__ import annotations

import math
import numbers
import time
import zlib

import numpy as np

__all__ = ["MODEL_SPECS", "InferenceInputError", "MLP", "make_request_input", "checksum"]

INPUT_DIM = 1024
OUTPUT_DIM = 16

#: Layer widths per model type, input first, output last; ReLU between hidden layers.
MODEL_SPECS: dict = {
    "small": (INPUT_DIM, 256, OUTPUT_DIM),
    "medium": (INPUT_DIM, 1024, 1024, OUTPUT_DIM),
    "large": (INPUT_DIM, 2048, 2048, 2048, 2048, OUTPUT_DIM),
}


class InferenceInputError(ValueError):
    """A model type, model input or request argument that the model cannot take."""


def _is_int(value) -> bool:
    """True for Python and numpy integers, but not for bools (``True`` is not a size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


class MLP:
    """A fully connected ReLU network with deterministic float32 weights.

    ``MLP(model_type, seed)`` is the same model in every process: weights and biases are
    drawn in layer order from ``numpy.random.default_rng(seed)``, weights He-scaled
    (standard deviation ``sqrt(2 / fan_in)``) so activations stay of order one through
    the ReLU layers instead of vanishing or overflowing. The parameters are read-only,
    and :meth:`forward` keeps no state between calls, so it is safe to call repeatedly.
    """

    def __init__(self, model_type: str = "small", seed: int = 0):
        if model_type not in MODEL_SPECS:
            valid = ", ".join(repr(k) for k in MODEL_SPECS)
            raise InferenceInputError(
                f"unknown model_type {model_type!r}; expected one of {valid}")
        if not _is_int(seed) or seed < 0:
            raise InferenceInputError(
                f"seed must be a non-negative int; received {seed!r}")
        self.model_type = model_type
        self.layer_widths = tuple(MODEL_SPECS[model_type])
        self.input_dim = self.layer_widths[0]
        self.output_dim = self.layer_widths[-1]
        rng = np.random.default_rng(int(seed))
        self.weights = []
        self.biases = []
        for fan_in, fan_out in zip(self.layer_widths[:-1], self.layer_widths[1:]):
            w = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
            w *= np.float32(math.sqrt(2.0 / fan_in))
            b = rng.standard_normal(fan_out, dtype=np.float32)
            b *= np.float32(0.01)
            w.flags.writeable = False
            b.flags.writeable = False
            self.weights.append(w)
            self.biases.append(b)
        self.n_params = int(sum(w.size + b.size for w, b in zip(self.weights, self.biases)))
        self.nbytes = int(sum(w.nbytes + b.nbytes for w, b in zip(self.weights, self.biases)))

    def __repr__(self) -> str:
        return (f"MLP(model_type={self.model_type!r}, layer_widths={self.layer_widths}, "
                f"n_params={self.n_params})")

    def _check_input(self, x) -> np.ndarray:
        """``x`` as a float32 array of shape (batch, input_dim), or InferenceInputError."""
        expected = f"a 2-d float32/float64 array of shape (batch, {self.input_dim})"
        if not isinstance(x, np.ndarray):
            raise InferenceInputError(f"expected {expected}; received {type(x).__name__}")
        if x.dtype not in (np.float32, np.float64):
            raise InferenceInputError(f"expected {expected}; received dtype {x.dtype}")
        if x.ndim != 2:
            raise InferenceInputError(
                f"expected {expected}; received a {x.ndim}-d array of shape {x.shape}")
        if x.shape[1] != self.input_dim:
            raise InferenceInputError(
                f"expected {expected}; received width {x.shape[1]} (shape {x.shape})")
        if x.shape[0] == 0:
            raise InferenceInputError(
                f"expected {expected} with at least one row; received an empty batch")
        finite = np.isfinite(x)
        if not finite.all():
            bad = int(x.size - np.count_nonzero(finite))
            raise InferenceInputError(
                f"expected finite values; received {bad} NaN/inf value(s)")
        if x.dtype == np.float64:
            limit = np.finfo(np.float32).max
            if np.abs(x).max() > limit:
                raise InferenceInputError(
                    f"expected float64 values within float32 range (|x| <= {limit:.3e}); "
                    f"received max |x| = {np.abs(x).max():.3e}")
            x = x.astype(np.float32)
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The network's output for a batch: float32 of shape (batch, output_dim).

        ``x`` must be a 2-d float32 or float64 array (float64 is converted) with
        ``input_dim`` columns, at least one row and only finite values; anything else
        raises InferenceInputError. ReLU follows every hidden layer; the last layer is
        linear. ``x`` itself is never modified.
        """
        h = self._check_input(x)
        last = len(self.weights) - 1
        with np.errstate(over="ignore", invalid="ignore"):
            for i, (w, b) in enumerate(zip(self.weights, self.biases)):
                h = h @ w          # a new array each layer, so x is never written
                h += b
                if i < last:
                    np.maximum(h, 0.0, out=h)
        if not np.isfinite(h).all():
            raise InferenceInputError(
                "expected input magnitudes that keep the output within float32 range; "
                "received input whose output overflowed")
        return h

    def infer(self, x) -> dict:
        """Run :meth:`forward` on ``x`` and summarise it as a JSON-friendly reply.

        ``compute_time_ms`` is measured with ``time.perf_counter`` around the forward
        pass alone (input checks included), so it is the worker's compute, not transport.
        """
        start = time.perf_counter()
        out = self.forward(x)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        return {
            "checksum": checksum(out),
            "compute_time_ms": elapsed_ms,
            "batch_size": int(out.shape[0]),
            "output_shape": list(out.shape),
        }


def make_request_input(request_id: str, batch_size: int | None = 64, kb: float = 256.0,
                       input_dim: int = INPUT_DIM) -> np.ndarray:
    """The deterministic float32 input of one request, derived from its id.

    The rng seed is ``zlib.crc32`` of the id's UTF-8 bytes, a hash that is the same in
    every process (Python's ``hash()`` of a str is salted per process), so the client and
    any worker can rebuild the same input from the id alone. The shape is
    ``(batch_size, input_dim)``; when ``batch_size`` is None the row count comes from the
    payload size instead, ``max(1, round(kb * 1024 / (input_dim * 4)))``. The default,
    64 rows x 1024 float32 columns, is 262144 bytes = 256 KiB.
    """
    if not isinstance(request_id, str) or not request_id:
        raise InferenceInputError(
            f"request_id must be a non-empty str; received {request_id!r}")
    if batch_size is not None and (not _is_int(batch_size) or batch_size <= 0):
        raise InferenceInputError(
            f"batch_size must be a positive int or None; received {batch_size!r}")
    if (not isinstance(kb, numbers.Real) or isinstance(kb, (bool, np.bool_))
            or not math.isfinite(kb) or kb <= 0):
        raise InferenceInputError(f"kb must be a positive finite number; received {kb!r}")
    if not _is_int(input_dim) or input_dim <= 0:
        raise InferenceInputError(
            f"input_dim must be a positive int; received {input_dim!r}")
    if batch_size is None:
        rows = max(1, round(kb * 1024 / (input_dim * 4)))
    else:
        rows = int(batch_size)
    rng = np.random.default_rng(zlib.crc32(request_id.encode("utf-8")))
    return rng.standard_normal((rows, int(input_dim)), dtype=np.float32)


def checksum(out: np.ndarray) -> float:
    """A scalar summary of a model output, to check a reply against a local forward pass.

    The float64 sum of every element, rounded to 6 decimals; nothing random enters, so
    equal arrays give equal checksums. Equal *inputs* give equal outputs, and so equal
    checksums, on the same BLAS build and thread count; across machines, compare with a
    tolerance.
    """
    arr = np.asarray(out)
    if arr.dtype.kind not in "fiu":
        raise InferenceInputError(
            f"expected a real numeric array; received dtype {arr.dtype}")
    return round(float(np.sum(arr, dtype=np.float64)), 6)
