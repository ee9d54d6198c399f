"""PDE surrogates: generate datasets, train neural operators, compare with classical solvers, serve."""

__version__ = "0.1.0"

__all__ = ["PointwiseSurrogate", "RolloutSurrogate", "Surrogate", "__version__"]


def __getattr__(name: str):
    # Imported lazily so that `import surrogates` stays cheap (no torch import).
    if name == "Surrogate":
        from surrogates.serve.surrogate import Surrogate

        return Surrogate
    if name == "RolloutSurrogate":
        from surrogates.serve.rollout import RolloutSurrogate

        return RolloutSurrogate
    if name == "PointwiseSurrogate":
        from surrogates.serve.pointwise import PointwiseSurrogate

        return PointwiseSurrogate
    raise AttributeError(f"module 'surrogates' has no attribute {name!r}")
