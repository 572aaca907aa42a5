"""Models trained elsewhere, in the model protocol: plain torch modules (``wrap``, also ``ibkit.wrap``) and pythae
models (``ibkit.adapters.pythae.wrap``, with the optional extra ``pip install ibkit[pythae]``)."""

from ibkit.adapters.modules import WrappedModel, wrap

__all__ = ["wrap", "WrappedModel"]
