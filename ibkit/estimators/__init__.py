"""Estimators of rate, distortion, likelihood, information and latent usage: pure functions of (model, x),
in nats."""

from ibkit.estimators.information import (
           channel_codes,
           information_bracket,
           kl_per_dim,
           label_information,
           mi_bounds,
           per_layer,
           probe_curve,
           tightest_upper,
)
from ibkit.estimators.likelihood import distortion, elbo, iwae, mse, rate, rate_standard_error
from ibkit.estimators.posterior import amortization_gap, posterior_correlation, rate_decomposition
from ibkit.estimators.probe import Probe, probe
from ibkit.estimators.usage import active_units, code_covariance, code_means, decoder_folds

__all__ = ["rate", "rate_standard_error", "distortion", "mse", "elbo", "iwae", "mi_bounds", "information_bracket",
           "probe", "Probe", "probe_curve", "kl_per_dim", "label_information", "active_units", "code_means",
           "decoder_folds", "code_covariance", "channel_codes", "tightest_upper",
           "posterior_correlation", "rate_decomposition", "amortization_gap", "per_layer"]
