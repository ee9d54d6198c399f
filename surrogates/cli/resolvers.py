"""OmegaConf resolvers used by the configs (registered when `surrogates.cli` is imported)."""

from omegaconf import OmegaConf


def register_resolvers() -> None:
    """Register ``${len:...}``, used to derive a model's channel counts from the data's variables."""
    OmegaConf.register_new_resolver("len", lambda value: len(value), replace=True)


register_resolvers()
