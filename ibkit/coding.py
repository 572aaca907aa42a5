"""Code lengths that realise the bounds: -ELBO as the length of a real lossless bitstream (bits-back coding).

Bits-back coding with ANS (Frey & Hinton 1997; Townsend, Bird & Barber 2019, BB-ANS) sends a row x of discrete data
with a latent-variable model in three stack operations, each an entropy coder call of ``constriction`` (Bamler's
ANS coder; ibkit writes no coder of its own):

    pop   z ~ q(z|x)     from the stack   (gets back -log q(z|x) bits already there)
    push  x under p(x|z)                  (costs -log p(x|z))
    push  z under p(z)                    (costs -log p(z))

so each row adds -log p(x|z) - log p(z) + log q(z|x) to the stream: on average -ELBO. The receiver pops z, pops x,
recomputes q(z|x) and pushes z back, leaving the stack as the sender found it; the first rows' pops read from
``initial_bits`` of seed words, reported apart.

The latent is discretised into ``latent_bins`` bins of equal mass under the prior, per dimension (z is sent as its
bin index; the decoder sees the bin's median): the prior's bins cost exactly log ``latent_bins`` each, the
posterior's bins are its mass on them, so the discretisation costs nothing in expectation where q is wide against
the bins and adds the mismatch between z and its bin median where it is not; 2^12 bins per dimension keep it within
a fraction of a percent of -ELBO for the models ibkit trains. The coder's 24-bit fixed-point probabilities add a
little more (at most about 2^-24 relative per symbol, plus the floor it gives empty bins).

Supported now: a diagonal Gaussian posterior, a prior with a diagonal Gaussian per-dimension CDF (``N(0, I)``) and
a Bernoulli likelihood (``decode(z)``, the pixel probabilities) on binary x. Anything else is refused with a
ValueError that says why. Rows run in ``chains`` independent ANS chains, so that the posterior and the decoder see
one row of every chain per network call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ibkit.checks import check_number
from ibkit.distributions import diagonal_normal
from ibkit.interface import is_stochastic
from ibkit.seeding import seeded

DEFAULT_BINS = 2**12  # equal-mass bins of the prior per latent dimension
WORD_BITS = 32  # constriction's ANS words
PRECISION_BITS = 24  # constriction's fixed-point precision: no symbol costs more than this


@dataclass
class CodeLength:
    """What ``bits_back`` measured: a real bitstream and its length.

    Attributes:
        total_bits: the length of the streams of every chain as stored (whole 32-bit words), seed words included.
        initial_bits: the seed words the first rows' pops read from (the one-off overhead, reported apart).
        nats_per_example: the mean net length per row, (total_bits - initial_bits) ln 2 / N: the rows' increments
            and the chains' padding to whole words.
        per_example: [N] each row's net increment of its chain's stream, in nats.
        decoded: [N, D] the rows read back from the stream (equal to x: ``bits_back`` checks it).
    """

    total_bits: int
    initial_bits: int
    nats_per_example: float
    per_example: Tensor
    decoded: Tensor


def _constriction():
    try:
        import constriction
    except ImportError:
        raise ValueError("bits-back coding needs the constriction package (pip install constriction, or the "
                         "ibkit[coding] extra)") from None
    return constriction


def _binary_rows(x) -> Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x has shape {list(x.shape)}; bits-back codes rows [N, D] with N >= 1")
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError("bits-back codes discrete data; x holds values other than 0 and 1, which a Bernoulli "
                         "likelihood cannot code (binarise the pixels, e.g. ibkit.data.load(..., binarize=...))")
    return x


def _check_model(model, x: Tensor) -> None:
    """Refuse, with the reason, a model bits-back cannot code yet: no posterior, a posterior other than a diagonal
    Gaussian, a prior without a diagonal Gaussian CDF, or a likelihood that is not Bernoulli(decode(z))."""
    if not is_stochastic(model) or not callable(getattr(model, "decode", None)):
        raise ValueError(f"bits-back needs posterior(x), prior() and decode(z) (the Bernoulli means); "
                         f"{type(model).__name__} lacks some")
    with torch.no_grad():
        q = model.posterior(x[:2])
        if diagonal_normal(q) is None:
            raise ValueError(f"bits-back codes a diagonal Gaussian posterior for now; this model's q(z|x) is a "
                             f"{type(q).__name__} (full-covariance, IAF and hierarchical posteriors are not coded "
                             "yet)")
        prior = model.prior()
        if diagonal_normal(prior.expand(torch.Size([1]))) is None:
            raise ValueError(f"bits-back needs a prior with a per-dimension Gaussian CDF; got {type(prior).__name__}")
        z = diagonal_normal(q)[0].unsqueeze(0)  # [1, 2, d]
        p = model.decode(z).double().clamp(1e-12, 1 - 1e-12)
        bernoulli = (x[:2] * p.log() + (1 - x[:2]) * (-p).log1p()).sum(-1)
        stated = model.log_likelihood(x[:2], z).double()
    if not torch.allclose(bernoulli, stated, rtol=1e-4, atol=1e-3):
        raise ValueError("bits-back codes discrete data with a Bernoulli likelihood: log_likelihood(x, z) must be "
                         "the Bernoulli log-probability of x under decode(z); this model's is not (a Gaussian "
                         "likelihood on continuous x has no finite code length)")


def _bins(model, latent_bins: int) -> tuple[Tensor, Tensor]:
    """The bin edges [d, B + 1] (float64, -inf and inf at the ends) of B equal-mass bins of the prior per dimension,
    and the bin medians [d, B] the decoder sees."""
    loc, scale = diagonal_normal(model.prior().expand(torch.Size([1])))
    loc, scale = loc[0].double(), scale[0].double()
    standard = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    levels = torch.arange(latent_bins + 1, dtype=torch.float64) / latent_bins
    edges = loc[:, None] + scale[:, None] * standard.icdf(levels)[None, :]
    medians = loc[:, None] + scale[:, None] * standard.icdf((torch.arange(latent_bins, dtype=torch.float64) + 0.5)
                                                            / latent_bins)[None, :]
    return edges, medians


def _posterior_bins(model, x: Tensor, edges: Tensor) -> np.ndarray:
    """q's mass on each bin [K, d, B] (float64) for the rows x [K, D]."""
    loc, scale = diagonal_normal(model.posterior(x))
    cdf = torch.special.ndtr((edges[None] - loc.double()[..., None]) / scale.double()[..., None])  # [K, d, B + 1]
    return (cdf[..., 1:] - cdf[..., :-1]).clamp_min(0.0).numpy()


def _means(model, codes: np.ndarray, medians: Tensor) -> np.ndarray:
    """The Bernoulli means [K, D] (float64) the decoder gives the bin medians of the bin indices codes [K, d]."""
    d = medians.shape[0]
    z = medians[torch.arange(d)[None, :], torch.as_tensor(codes, dtype=torch.long)].float()  # [K, d]
    return model.decode(z.unsqueeze(0))[0].double().clamp(0.0, 1.0).numpy()


def bits_back(model, x, *, seed: int = 0, latent_bins: int = DEFAULT_BINS, chains: int = 16) -> CodeLength:
    """Encode every row of binary x into ANS bitstreams by bits-back coding (BB-ANS), decode them and check the round
    trip (module docstring).

    Args:
        model: a protocol model with a diagonal Gaussian posterior, a diagonal Gaussian prior and ``decode(z)`` giving
            the Bernoulli pixel probabilities its ``log_likelihood`` scores (ibkit's Bernoulli VAEs, ``ibkit.wrap``).
        x: [N, D] binary rows (0 or 1).
        seed: the seed words the first pops read: the same seed gives the same bitstream.
        latent_bins: equal-mass bins of the prior per latent dimension (the latent's discretisation; at most 2^16).
        chains: independent ANS chains; each step codes one row of every chain, so the network runs on batches of
            up to ``chains`` rows. Each chain's stream ends in a whole 32-bit word: at most 31 bits of padding per
            chain, a one-off cost that ``nats_per_example`` includes (``per_example`` does not).

    Returns:
        the ``CodeLength``: total and initial bits, the net nats per row and per example, and the decoded rows.

    Raises:
        ValueError: a model or data bits-back cannot code (the message says why), or a failed round trip.
    """
    constriction = _constriction()
    check_number("seed", seed, low=0, integer=True)
    check_number("latent_bins", latent_bins, low=2, high=2**16, integer=True)
    check_number("chains", chains, low=1, integer=True)
    x = _binary_rows(x)
    model = model.eval() if isinstance(model, torch.nn.Module) else model
    _check_model(model, x)
    stream = constriction.stream
    categorical, bernoulli = stream.model.Categorical(perfect=False), stream.model.Bernoulli(perfect=False)
    uniform = stream.model.Uniform(latent_bins)
    n = len(x)
    k = min(chains, n)
    rows = [list(range(c, n, k)) for c in range(k)]  # chain c codes rows c, c + k, ...: step t is rows t k .. t k + k-1
    steps = len(rows[0])
    with torch.no_grad():
        edges, medians = _bins(model, latent_bins)
        d = medians.shape[0]
        words = math.ceil(PRECISION_BITS * d / WORD_BITS) + 2  # enough for any first pop of q's d bins
        with seeded(seed):
            initial = torch.randint(0, 2**31, (k, words), dtype=torch.int64).numpy().astype(np.uint32)
        coders = [stream.stack.AnsCoder(initial[c].copy()) for c in range(k)]
        increments = np.zeros(n)
        symbols = x.numpy().astype(np.int32)
        for t in range(steps):  # encode
            active = [c for c in range(k) if t < len(rows[c])]
            batch = [rows[c][t] for c in active]
            q = _posterior_bins(model, x[batch], edges)
            before = [coders[c].num_valid_bits() for c in active]
            codes = np.stack([coders[c].decode(categorical, q[i]) for i, c in enumerate(active)])
            means = _means(model, codes, medians)
            for i, c in enumerate(active):
                coders[c].encode_reverse(symbols[batch[i]], bernoulli, means[i])
                coders[c].encode_reverse(codes[i].astype(np.int32), uniform)
                increments[batch[i]] = coders[c].num_valid_bits() - before[i]
        total = sum(coder.num_bits() for coder in coders)
        decoded = np.zeros_like(symbols)
        for t in reversed(range(steps)):  # decode: the last row first, leaving each stack as it was before it
            active = [c for c in range(k) if t < len(rows[c])]
            batch = [rows[c][t] for c in active]
            codes = np.stack([coders[c].decode(uniform, d) for c in active])
            means = _means(model, codes, medians)
            for i, c in enumerate(active):
                decoded[batch[i]] = coders[c].decode(bernoulli, means[i])
            q = _posterior_bins(model, torch.as_tensor(decoded[batch], dtype=torch.float32), edges)
            for i, c in enumerate(active):
                coders[c].encode_reverse(codes[i].astype(np.int32), categorical, q[i])
    if not np.array_equal(decoded, symbols) or any(
            not np.array_equal(coders[c].get_compressed(), initial[c]) for c in range(k)):
        raise ValueError("bits-back round trip failed: the decoded rows or the seed words differ from what was "
                         "encoded (the network gave different numbers for the same inputs)")
    initial_bits = int(initial.size * WORD_BITS)
    per_example = torch.as_tensor(increments * math.log(2), dtype=torch.float64)
    return CodeLength(total_bits=int(total), initial_bits=initial_bits,
                      nats_per_example=(total - initial_bits) * math.log(2) / n, per_example=per_example,
                      decoded=torch.as_tensor(decoded, dtype=torch.float32))


__all__ = ["CodeLength", "bits_back", "DEFAULT_BINS"]
