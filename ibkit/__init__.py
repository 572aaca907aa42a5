"""ibkit: what flows through the bottleneck of an autoencoder, in nats.

    import ibkit
    from ibkit import estimators as E
    ds = ibkit.data.load("digits")
    m = ibkit.build_model(kind="vae", input_dim=ds.input_dim, latent_dim=8, beta=1.0)
    history = ibkit.fit(m, ds.train, epochs=50, seed=0)
    E.rate(m, ds.test), E.distortion(m, ds.test), E.iwae(m, ds.test, k=1000)

Importing ibkit has no side effects: no seeds, no logging handlers, no matplotlib backend (``ibkit.plots``, the
figures, imports matplotlib when first used).
"""

from ibkit import data, estimators, results, theory
from ibkit.adapters import wrap
from ibkit.analysis import analyse
from ibkit.batched import fit_many
from ibkit.models import build_model, load_checkpoint, register_model, save_checkpoint
from ibkit.train import DivergenceError, fit

__version__ = "0.1.0"

__all__ = ["data", "estimators", "results", "theory", "plots", "build_model", "register_model", "fit", "fit_many",
           "save_checkpoint", "load_checkpoint", "DivergenceError", "wrap", "analyse", "__version__"]


def __getattr__(name: str):
    """``ibkit.plots`` on first use: matplotlib is imported only by those who draw."""
    if name == "plots":
        import importlib

        return importlib.import_module("ibkit.plots")
    raise AttributeError(f"module 'ibkit' has no attribute {name!r}")
