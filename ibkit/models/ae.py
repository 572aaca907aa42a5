"""The deterministic autoencoder: z = f(x), loss = -log p(x|z), no penalty on the code."""

from ibkit.models.base import Autoencoder


class DeterministicAE(Autoencoder):
    """Plain autoencoder; its code can carry unbounded information (measure it through a probe channel)."""
