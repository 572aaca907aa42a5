"""Estimators of rate, distortion, likelihood and latent usage: pure functions of (model, x), in nats."""

from ibkit.estimators.likelihood import distortion, elbo, iwae, rate
from ibkit.estimators.usage import active_units, code_means

__all__ = ["rate", "distortion", "elbo", "iwae", "active_units", "code_means"]
