"""PDE surrogates: generate datasets, train neural operators, compare with classical solvers, serve."""

__version__ = "0.1.0"

__all__ = ["Surrogate", "__version__"]


def __getattr__(name: str):
    # Imported lazily so that `import surrogates` stays cheap (no torch import).
    if name == "Surrogate":
        from surrogates.serve.surrogate import Surrogate

        return Surrogate
    raise AttributeError(f"module 'surrogates' has no attribute {name!r}")
