"""The parallel-inference benchmark's model alone: a seeded numpy MLP (no MPI)."""

import numpy as np
import pytest

from plexhpc.apps.inference import (MLP, MODEL_SPECS, InferenceInputError, checksum,
                                    make_request_input)


@pytest.fixture(scope="module")
def small():
    return MLP("small", seed=0)


@pytest.fixture(scope="module")
def x():
    return make_request_input("req-0")


def test_specs_are_1024_in_16_out():
    assert set(MODEL_SPECS) == {"small", "medium", "large"}
    for widths in MODEL_SPECS.values():
        assert widths[0] == 1024 and widths[-1] == 16 and len(widths) >= 3


def test_attributes(small):
    assert small.model_type == "small"
    assert small.layer_widths == MODEL_SPECS["small"]
    assert (small.input_dim, small.output_dim) == (1024, 16)
    widths = small.layer_widths
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    assert isinstance(small.n_params, int) and small.n_params == expected
    assert isinstance(small.nbytes, int) and small.nbytes == 4 * expected
    assert all(w.dtype == np.float32 for w in small.weights + small.biases)


def test_same_seed_same_model_and_output(small, x):
    other = MLP("small", seed=0)
    for a, b in zip(small.weights + small.biases, other.weights + other.biases):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(small.forward(x), other.forward(x))


def test_different_seeds_differ(small, x):
    other = MLP("small", seed=1)
    assert not np.array_equal(small.weights[0], other.weights[0])
    assert not np.array_equal(small.forward(x), other.forward(x))


def test_output_shape_dtype_and_finite(small, x):
    out = small.forward(x)
    assert out.shape == (64, 16) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_repeated_calls_agree_and_leave_input_alone(small, x):
    before = x.copy()
    first = small.forward(x)
    second = small.forward(x)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(x, before)


def test_float64_input_is_converted(small, x):
    out = small.forward(x.astype(np.float64))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, small.forward(x))


def test_forward_matches_explicit_loop_reference(small, x):
    """ReLU on the hidden layer, none on the last, checked unit by unit in float64."""
    batch = x[:2]
    (w1, w2), (b1, b2) = small.weights, small.biases
    ref = np.zeros((2, 16))
    negatives = 0
    for r in range(2):
        hidden = np.zeros(w1.shape[1])
        for j in range(w1.shape[1]):
            pre = float(np.dot(batch[r].astype(np.float64), w1[:, j])) + float(b1[j])
            negatives += pre < 0
            hidden[j] = pre if pre > 0 else 0.0
        for k in range(w2.shape[1]):
            ref[r, k] = float(np.dot(hidden, w2[:, k].astype(np.float64))) + float(b2[k])
    assert negatives > 0  # the ReLU actually clipped something
    assert (ref < 0).any()  # and the last layer is linear: negative outputs survive
    np.testing.assert_allclose(small.forward(batch), ref, rtol=1e-4, atol=1e-4)


def test_make_request_input_default_is_256_kib():
    a = make_request_input("req-7")
    assert a.shape == (64, 1024) and a.dtype == np.float32
    assert a.nbytes == 262144


def test_make_request_input_is_deterministic():
    np.testing.assert_array_equal(make_request_input("req-7"), make_request_input("req-7"))
    assert not np.array_equal(make_request_input("req-7"), make_request_input("req-8"))


def test_make_request_input_sizes():
    assert make_request_input("r", batch_size=3).shape == (3, 1024)
    assert make_request_input("r", batch_size=None, kb=256.0).shape == (64, 1024)
    assert make_request_input("r", batch_size=None, kb=1024.0).shape == (256, 1024)
    assert make_request_input("r", batch_size=None, kb=0.001).shape == (1, 1024)
    assert make_request_input("r", batch_size=2, input_dim=8).shape == (2, 8)


def test_checksum_equal_for_equal_inputs(small):
    a = small.forward(make_request_input("req-3"))
    b = MLP("small", seed=0).forward(make_request_input("req-3"))
    assert isinstance(checksum(a), float)
    assert checksum(a) == checksum(b)
    assert checksum(a) != checksum(small.forward(make_request_input("req-4")))


def test_infer_reply(small, x):
    reply = small.infer(x)
    assert set(reply) == {"checksum", "compute_time_ms", "batch_size", "output_shape"}
    assert reply["checksum"] == checksum(small.forward(x))
    assert isinstance(reply["compute_time_ms"], float) and reply["compute_time_ms"] > 0
    assert reply["batch_size"] == 64
    assert reply["output_shape"] == [64, 16]


@pytest.mark.parametrize("model_type", ["medium", "large"])
def test_bigger_models_run_once(model_type):
    model = MLP(model_type, seed=0)
    reply = model.infer(make_request_input("req-0"))
    assert reply["output_shape"] == [64, 16]
    assert np.isfinite(reply["checksum"])


def test_unknown_model_type():
    with pytest.raises(InferenceInputError, match=r"'huge'.*'small', 'medium', 'large'"):
        MLP("huge")


def test_bad_seed():
    with pytest.raises(InferenceInputError, match=r"non-negative int; received -1"):
        MLP("small", seed=-1)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 512), np.float32), r"\(batch, 1024\).*received width 512"),
    (np.zeros(1024, np.float32), r"2-d.*received a 1-d array of shape \(1024,\)"),
    (np.zeros((2, 1024), np.int64), r"float32/float64.*received dtype int64"),
    (np.zeros((0, 1024), np.float32), r"at least one row; received an empty batch"),
    ([[0.0] * 1024], r"received list"),
], ids=["wrong-width", "1-d", "int-dtype", "empty-batch", "not-ndarray"])
def test_bad_model_input(small, bad, message):
    with pytest.raises(InferenceInputError, match=message):
        small.forward(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_input(small, x, value):
    bad = x.copy()
    bad[1, 5] = value
    with pytest.raises(InferenceInputError, match=r"expected finite values; received 1 "):
        small.forward(bad)


def test_float64_beyond_float32_range(small):
    bad = np.zeros((1, 1024))
    bad[0, 0] = 1e300
    with pytest.raises(InferenceInputError, match=r"within float32 range.*1\.000e\+300"):
        small.forward(bad)


def test_output_overflow_is_an_error_not_a_warning(small):
    with pytest.raises(InferenceInputError, match=r"output overflowed"):
        small.forward(np.full((1, 1024), 3e38, np.float32))


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, True, "64"])
def test_bad_batch_size(batch_size):
    with pytest.raises(InferenceInputError, match=r"batch_size must be a positive int"):
        make_request_input("r", batch_size=batch_size)


@pytest.mark.parametrize("request_id", ["", None, 7])
def test_bad_request_id(request_id):
    with pytest.raises(InferenceInputError, match=r"request_id must be a non-empty str"):
        make_request_input(request_id)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": None, "kb": 0}, r"kb must be a positive finite number; received 0"),
    ({"batch_size": None, "kb": float("nan")}, r"kb must be a positive finite number"),
    ({"input_dim": 0}, r"input_dim must be a positive int; received 0"),
])
def test_bad_size_arguments(kwargs, message):
    with pytest.raises(InferenceInputError, match=message):
        make_request_input("r", **kwargs)


def test_error_is_a_value_error():
    assert issubclass(InferenceInputError, ValueError)
