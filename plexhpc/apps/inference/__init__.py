"""The parallel-inference benchmark's model: a seeded numpy MLP and its request inputs."""

from .model import MLP, MODEL_SPECS, InferenceInputError, checksum, make_request_input

__all__ = ["MLP", "MODEL_SPECS", "make_request_input", "checksum", "InferenceInputError"]
