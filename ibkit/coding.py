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
bin index; the networks see the bin's median): the prior's bins cost exactly log ``latent_bins`` each, the
posterior's bins are its mass on them, so the discretisation costs nothing in expectation where q is wide against
the bins and adds the mismatch between z and its bin median where it is not; 2^12 bins per dimension keep it within
a fraction of a percent of -ELBO for the models ibkit trains. The coder's 24-bit fixed-point probabilities add a
little more (at most about 2^-24 relative per symbol, plus the floor it gives empty bins). The price of more bins is
time: every row builds q's table over all of them, d x ``latent_bins`` entries, to pop z and again to push it back.

The latent is coded in steps, each a Gaussian against a Gaussian prior (``_latent``):

- a diagonal Gaussian q(z|x) against a prior with independent Gaussian dimensions: one step;
- a full-covariance q = N(mu, L L^T): one conditional at a time, z_j given the medians of z_<j's bins;
- a top-down hierarchical VAE (``hvae``, Sønderby et al. 2016's ladder): layer by layer from the top, as its
  inference runs, z_l ~ q(z_l | z_{l+1}, x) on the equal-mass bins of p(z_l | z_{l+1}), both at z_{l+1}'s medians
  (so every layer's prior push is uniform and the receiver pops all bins at once, then reads them top-down).

The likelihood is Bernoulli (``decode(z)``, the pixel probabilities) on binary x. Anything else (an IAF's flow, a
bottom-up hierarchy, a Gaussian likelihood) is refused with a ValueError that says why. Rows run in ``chains``
independent ANS chains, so that the posterior and the decoder see one row of every chain per network call.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ibkit.checks import check_number
from ibkit.distributions import diagonal_normal
from ibkit.interface import is_stochastic
from ibkit.models.hvae import HierarchicalPosterior, HierarchicalVAE
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


def _prior_loc_scale(prior) -> tuple[Tensor, Tensor] | None:
    """(loc, scale) [d] (float64) of a prior with independent Gaussian dimensions: a diagonal Normal, or a
    MultivariateNormal whose covariance is diagonal (the full family's form of N(0, I)); None for any other."""
    if isinstance(prior, MultivariateNormal):
        tril = prior.scale_tril.double()
        if tril.dim() != 2 or not torch.equal(tril, torch.diag(tril.diagonal())):
            return None
        return prior.loc.double(), tril.diagonal()
    found = diagonal_normal(prior.expand(torch.Size([1])))
    return None if found is None else (found[0][0].double(), found[1][0].double())


LocScale = tuple[Tensor, Tensor]  # a Gaussian's loc and scale, each [K, n] float64


@dataclass
class _Latent:
    """A model's latent as Gaussian steps coded one after the other: ``steps`` holds the latent dimensions of each
    step, in the order the sender pops them; ``prior(s, z)`` and ``posterior(q, s, z)`` give p's and q's (loc,
    scale) [K, n_s] of step s's dimensions given the values z [K, d] (float64) of the steps before it (the bin
    medians; later dimensions are zeros, and are not read)."""

    steps: list[list[int]]
    prior: Callable[[int, Tensor], LocScale]
    posterior: Callable[[Any, int, Tensor], LocScale]


def _double(normal) -> LocScale:
    return normal.loc.double(), normal.scale.double()


def _flat(model, q) -> _Latent:
    """A diagonal Gaussian q(z|x) (one step: every dimension at once) or a full-covariance one, N(mu, L L^T), coded
    one conditional at a time: z_j given z_<j is N(mu_j + L_j,<j eps_<j, L_jj^2), eps_<j = L_<j,<j^-1 (z_<j -
    mu_<j); against a prior with independent Gaussian dimensions."""
    found = _prior_loc_scale(model.prior())
    if found is None:
        raise ValueError("bits-back needs a prior with a per-dimension Gaussian CDF; got "
                         f"{type(model.prior()).__name__}")
    loc, scale = found

    def prior(s: int, z: Tensor) -> LocScale:
        dims = steps[s]
        return loc[dims].expand(len(z), -1), scale[dims].expand(len(z), -1)

    if not isinstance(q, MultivariateNormal):
        steps = [list(range(len(loc)))]
        return _Latent(steps, prior, lambda q, s, z: tuple(t.double() for t in diagonal_normal(q)))  # type: ignore

    def conditional(q: MultivariateNormal, j: int, z: Tensor) -> LocScale:
        mu, tril = q.loc.double(), q.scale_tril.double()
        eps = torch.linalg.solve_triangular(tril[:, :j, :j], (z[:, :j] - mu[:, :j]).unsqueeze(-1), upper=False)
        mean = mu[:, j] + (tril[:, j, :j] * eps.squeeze(-1)).sum(-1)
        return mean[:, None], tril[:, j, j, None]

    steps = [[j] for j in range(len(loc))]
    return _Latent(steps, prior, conditional)


def _layered(model: HierarchicalVAE) -> _Latent:
    """A top-down hierarchical VAE, layer by layer from the top, as its inference runs: z_L ~ q(z_L|x) on the bins
    of p(z_L); then z_l ~ q(z_l | z_{l+1}, x) on the bins of p(z_l | z_{l+1}), both at the medians of z_{l+1}."""
    top = len(model.latent_dims) - 1
    ends = np.cumsum((0,) + model.latent_dims)
    steps = [list(range(ends[k], ends[k + 1])) for k in range(top, -1, -1)]

    def layers(z: Tensor) -> list[Tensor | None]:
        return list(model.layers(z.float()))

    def prior(s: int, z: Tensor) -> LocScale:
        k = top - s
        p = model.layer_prior(k, None if k == top else layers(z)[k + 1])
        loc, scale = _double(p)
        return loc.expand(len(z), -1), scale.expand(len(z), -1)

    return _Latent(steps, prior, lambda q, s, z: _double(q.layer(top - s, layers(z))))


def _latent(model, x: Tensor) -> _Latent:
    """How bits-back codes the model's latent, after checking the model; refuses, with the reason, what it cannot
    code: no posterior, a posterior other than a diagonal, full-covariance or top-down hierarchical Gaussian, a
    prior without a Gaussian CDF per dimension, or a likelihood that is not Bernoulli(decode(z))."""
    if not is_stochastic(model) or not callable(getattr(model, "decode", None)):
        raise ValueError(f"bits-back needs posterior(x), prior() and decode(z) (the Bernoulli means); "
                         f"{type(model).__name__} lacks some")
    with torch.no_grad():
        q = model.posterior(x[:2])
        if isinstance(q, HierarchicalPosterior):
            if not q.top_down:
                raise ValueError("bits-back codes a hierarchical VAE top-down, as its inference runs; this one infers "
                                 "bottom-up (q(z_1|x) first), so the bins of z_l, equal-mass under p(z_l | z_{l+1}), "
                                 "are unknown when z_l is drawn (build it with inference='top_down')")
            latent = _layered(q.model)
        elif diagonal_normal(q) is not None or isinstance(q, MultivariateNormal):
            latent = _flat(model, q)
        else:
            raise ValueError(f"bits-back codes a diagonal, full-covariance or top-down hierarchical Gaussian "
                             f"posterior; this model's q(z|x) is a {type(q).__name__} (an IAF's flow has no "
                             f"per-dimension CDF to put on the bins)")
        z = torch.zeros(1, 2, q.event_shape[-1])
        p = model.decode(z).double().clamp(1e-12, 1 - 1e-12)
        bernoulli = (x[:2] * p.log() + (1 - x[:2]) * (-p).log1p()).sum(-1)
        stated = model.log_likelihood(x[:2], z).double()
    if not torch.allclose(bernoulli, stated, rtol=1e-4, atol=1e-3):
        raise ValueError("bits-back codes discrete data with a Bernoulli likelihood: log_likelihood(x, z) must be "
                         "the Bernoulli log-probability of x under decode(z); this model's is not (a Gaussian "
                         "likelihood on continuous x has no finite code length)")
    return latent


def _standard_bins(latent_bins: int) -> tuple[Tensor, Tensor]:
    """The edges [B + 1] (float64, -inf and inf at the ends) and medians [B] of B equal-mass bins of N(0, 1): a
    Gaussian p's bins are loc + scale times them."""
    standard = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    levels = torch.arange(2 * latent_bins + 1, dtype=torch.float64) / (2 * latent_bins)
    both = standard.icdf(levels)
    return both[0::2], both[1::2]


def _table(p: LocScale, q: LocScale, edges: Tensor) -> np.ndarray:
    """q's mass [K, n, B] (float64) on the B equal-mass bins of p, whose edges are p's loc + scale times the
    standard bin edges [B + 1]; p and q are elementwise Gaussians with loc and scale [K, n]. The CDF is erfc's
    (Phi(t) = erfc(-t / sqrt 2) / 2: a quarter of the time of torch's ndtr in float64)."""
    (p_loc, p_scale), (q_loc, q_scale) = p, q
    slope = (p_scale / q_scale * -math.sqrt(0.5))[..., None]  # -t / sqrt 2 = slope * edge + shift
    shift = ((q_loc - p_loc) / q_scale * math.sqrt(0.5))[..., None]
    twice_cdf = torch.erfc(torch.addcmul(shift, slope, edges))  # [K, n, B + 1]
    return (twice_cdf[..., 1:] - twice_cdf[..., :-1]).mul_(0.5).clamp_min_(0.0).numpy()


def _means(model, z: Tensor) -> np.ndarray:
    """The Bernoulli means [K, D] (float64) the decoder gives the latent values z [K, d]."""
    return model.decode(z.float().unsqueeze(0))[0].double().clamp(0.0, 1.0).numpy()


class _Coder:
    """What bits-back needs of a model, checked once: how its latent is coded, the bins and the decoder."""

    def __init__(self, model, x: Tensor, latent_bins: int, chains: int):
        constriction = _constriction()
        check_number("latent_bins", latent_bins, low=2, high=2**16, integer=True)
        check_number("chains", chains, low=1, integer=True)
        self.model: Any = model.eval() if isinstance(model, torch.nn.Module) else model
        self.latent = _latent(self.model, x)
        self.order = [j for dims in self.latent.steps for j in dims]  # the dimensions in the order they are popped
        self.stream = constriction.stream
        self.categorical = self.stream.model.Categorical(perfect=False)
        self.bernoulli = self.stream.model.Bernoulli(perfect=False)
        self.uniform = self.stream.model.Uniform(latent_bins)
        self.edges, self.medians = _standard_bins(latent_bins)
        self.latent_dim = len(self.order)
        self.chains = chains

    def walk(self, q, codes: np.ndarray, pop=None) -> tuple[Tensor, list[np.ndarray]]:
        """Step through the latent: each step's prior bins at the medians of the steps before it, and, given q,
        q's mass on them; ``pop(table [K, n, B]) -> [K, n]`` draws the step's bins into codes [K, d] (the sender),
        else codes holds them (the receiver). Returns the medians z [K, d] (float64) and q's tables (step order)."""
        z = torch.zeros(codes.shape, dtype=torch.float64)
        tables = []
        for s, dims in enumerate(self.latent.steps):
            p_loc, p_scale = self.latent.prior(s, z)
            if q is not None:
                tables.append(_table((p_loc, p_scale), self.latent.posterior(q, s, z), self.edges))
                if pop is not None:
                    codes[:, dims] = pop(tables[-1])
            z[:, dims] = p_loc + p_scale * self.medians[torch.as_tensor(codes[:, dims])]
        return z, tables

    def popper(self, coders: list, active: list[int]) -> Callable[[np.ndarray], np.ndarray]:
        """pop(table [K, n, B]) -> [K, n]: each active chain pops its row's n bins under its row's table."""
        return lambda table: np.stack([coders[c].decode(self.categorical, table[i]) for i, c in enumerate(active)])

    def shards(self, n: int) -> list[list[int]]:
        """Chain c codes rows c, c + K, c + 2K, ... (K chains): step t codes one row of every chain."""
        k = min(self.chains, n)
        return [list(range(c, n, k)) for c in range(k)]

    def seed_words(self, seed: int, n: int) -> np.ndarray:
        """[K, W] the seed words each chain starts from: enough for any first pop of q's d bins."""
        words = math.ceil(PRECISION_BITS * self.latent_dim / WORD_BITS) + 2
        with seeded(seed):
            return torch.randint(0, 2**32, (len(self.shards(n)), words), dtype=torch.int64).numpy().astype(np.uint32)

    def steps(self, n: int):
        """Each step t of the chains: the chains still coding (those with a t-th row) and their rows."""
        shards = self.shards(n)
        for t in range(len(shards[0])):
            active = [c for c in range(len(shards)) if t < len(shards[c])]
            yield active, [shards[c][t] for c in active]

    def encode(self, x: Tensor, seed: int) -> tuple[list, np.ndarray, np.ndarray]:
        """The chains' coders after every row of binary x [N, D] is pushed; each row's net increment in bits [N];
        the seed words [K, W]."""
        initial = self.seed_words(seed, len(x))
        coders = [self.stream.stack.AnsCoder(words.copy()) for words in initial]
        increments, symbols = np.zeros(len(x)), x.numpy().astype(np.int32)
        with torch.no_grad():
            for active, batch in self.steps(len(x)):
                before = [coders[c].num_valid_bits() for c in active]
                codes = np.zeros((len(batch), self.latent_dim), dtype=np.int64)
                z, _ = self.walk(self.model.posterior(x[batch]), codes, self.popper(coders, active))
                means = _means(self.model, z)
                for i, c in enumerate(active):
                    coders[c].encode_reverse(symbols[batch[i]], self.bernoulli, means[i])
                    coders[c].encode_reverse(codes[i].astype(np.int32), self.uniform)
                    increments[batch[i]] = coders[c].num_valid_bits() - before[i]
        return coders, increments, initial

    def decode(self, coders: list, n: int, width: int) -> np.ndarray:
        """The rows [N, D] popped from the chains' coders, the last row first, each stack left as before that row."""
        decoded = np.zeros((n, width), dtype=np.int32)
        with torch.no_grad():
            for active, batch in reversed(list(self.steps(n))):
                codes = np.stack([coders[c].decode(self.uniform, self.latent_dim) for c in active]).astype(np.int64)
                z, _ = self.walk(None, codes)
                means = _means(self.model, z)
                for i, c in enumerate(active):
                    decoded[batch[i]] = coders[c].decode(self.bernoulli, means[i])
                _, tables = self.walk(self.model.posterior(torch.as_tensor(decoded[batch], dtype=torch.float32)),
                                      codes)
                table, popped = np.concatenate(tables, axis=1), codes[:, self.order].astype(np.int32)
                for i, c in enumerate(active):
                    coders[c].encode_reverse(popped[i], self.categorical, table[i])
        return decoded


def bits_back(model, x, *, seed: int = 0, latent_bins: int = DEFAULT_BINS, chains: int = 16) -> CodeLength:
    """Encode every row of binary x into ANS bitstreams by bits-back coding (BB-ANS), decode them and check the round
    trip (module docstring).

    Args:
        model: a protocol model with ``decode(z)`` giving the Bernoulli pixel probabilities its ``log_likelihood``
            scores, and a diagonal or full-covariance Gaussian posterior against a prior with independent Gaussian
            dimensions, or a top-down ``hvae`` (ibkit's Bernoulli VAEs, ``ibkit.wrap``, pythae's VAEs).
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
    check_number("seed", seed, low=0, integer=True)
    x = _binary_rows(x)
    coder = _Coder(model, x, latent_bins, chains)
    coders, increments, initial = coder.encode(x, seed)
    total = sum(c.num_bits() for c in coders)
    decoded = coder.decode(coders, len(x), x.shape[1])
    if not np.array_equal(decoded, x.numpy().astype(np.int32)) or any(
            not np.array_equal(c.get_compressed(), words) for c, words in zip(coders, initial, strict=True)):
        raise ValueError("bits-back round trip failed: the decoded rows or the seed words differ from what was "
                         "encoded (the network gave different numbers for the same inputs)")
    initial_bits = int(initial.size * WORD_BITS)
    return CodeLength(total_bits=int(total), initial_bits=initial_bits,
                      nats_per_example=(total - initial_bits) * math.log(2) / len(x),
                      per_example=torch.as_tensor(increments * math.log(2), dtype=torch.float64),
                      decoded=torch.as_tensor(decoded, dtype=torch.float32))


# -- a self-describing file: compress / decompress ---------------------------------------------------------------

MAGIC = b"IBKITBB\n"  # the file's first 8 bytes
VERSION = 1
_HEAD = struct.Struct("<8sHIIIIQ")  # magic, version, rows N, width D, latent bins, chains, seed
_DIGEST = 32  # SHA-256 bytes: of the model's weights, and of the rows


def fingerprint(model) -> bytes:
    """SHA-256 of the model's weights (its ``state_dict``, names and values in order): a file names its model.

    Raises:
        ValueError: a model that is no ``torch.nn.Module`` (nothing to fingerprint).
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"compress needs a torch.nn.Module to fingerprint; got {type(model).__name__}")
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()


def compress(model, x, *, seed: int = 0, latent_bins: int = DEFAULT_BINS, chains: int = 1) -> bytes:
    """Binary rows x [N, D] as one self-describing bytes object: a header (magic, version, N, D, the coding
    parameters, the model's fingerprint, the rows' SHA-256), then each chain's bits-back stream (its length in words,
    then its 32-bit words), then a CRC-32 of all before it. Its size is the rows' bits-back length plus the seed
    words, the padding, ``header_bytes``, 4 bytes per chain and 4 of the CRC.

    Args:
        model: as ``bits_back`` takes it, and a ``torch.nn.Module`` (its weights are fingerprinted).
        x: [N, D] binary rows.
        seed, latent_bins: as in ``bits_back``.
        chains: as in ``bits_back``, but one by default: every chain costs the file its seed words (32 (ceil(24 d
            / 32) + 2) bits) and up to 31 bits of padding, which 16 chains make 4,096 bits at d = 8, while they code
            only about 1.3 times as fast on a CPU (``benchmarks/bench_coding.py``).

    Returns:
        the file's bytes.
    """
    check_number("seed", seed, low=0, integer=True)
    x = _binary_rows(x)
    coder = _Coder(model, x, latent_bins, chains)
    coders, _, _ = coder.encode(x, seed)
    streams = [c.get_compressed() for c in coders]
    rows = hashlib.sha256(x.numpy().astype(np.uint8).tobytes()).digest()
    fields = (MAGIC, VERSION, len(x), x.shape[1], latent_bins, chains, seed)  # in _HEAD's order
    head = _HEAD.pack(*fields) + fingerprint(model) + rows
    body = b"".join(struct.pack("<I", len(s)) + s.astype("<u4").tobytes() for s in streams)
    return head + body + struct.pack("<I", zlib.crc32(head + body))  # any flipped or lost byte is caught


def header_bytes() -> int:
    """The bytes of a file's header (before the chains' streams, each of which adds 4 bytes of length)."""
    return _HEAD.size + 2 * _DIGEST


def decompress(model, data: bytes) -> Tensor:
    """The rows [N, D] (float32, 0 or 1) of a file ``compress`` wrote, decoded with ``model``.

    Raises:
        ValueError: not such a file, another version, another model (its fingerprint differs), a truncated or
            corrupted file (the decoded rows' SHA-256 differs from the one stored): never wrong rows.
    """
    if len(data) < header_bytes() + 4 or data[:8] != MAGIC:
        raise ValueError("not an ibkit bits-back file (it does not start with the ibkit header); was it written by "
                         "ibkit compress?")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise ValueError("the file is truncated or corrupted: its CRC-32 does not match its contents")
    data = data[:-4]
    magic, version, n, width, latent_bins, chains, seed = _HEAD.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"an ibkit bits-back file of version {version}; this ibkit reads version {VERSION}")
    model_digest = data[_HEAD.size: _HEAD.size + _DIGEST]
    rows_digest = data[_HEAD.size + _DIGEST: header_bytes()]
    if fingerprint(model) != model_digest:
        raise ValueError("the file was compressed with another model (its weights' fingerprint differs); decompress "
                         "with the model that compressed it")
    streams, offset = [], header_bytes()
    try:
        for _ in range(min(chains, n)):
            (words,) = struct.unpack_from("<I", data, offset)
            stream = np.frombuffer(data, dtype="<u4", count=words, offset=offset + 4).astype(np.uint32)
            streams.append(stream)
            offset += 4 + 4 * words
    except (struct.error, ValueError):
        raise ValueError("the file is truncated: its streams end before the header says") from None
    if offset != len(data):
        raise ValueError(f"the file has {len(data) - offset} bytes beyond its streams: corrupted")
    probe = torch.zeros(2, width)
    coder = _Coder(model, probe, latent_bins, chains)
    coders = [coder.stream.stack.AnsCoder(s.copy()) for s in streams]
    try:
        decoded = coder.decode(coders, n, width)
    except Exception as e:  # a corrupted stream can make the coder refuse, or read past its end
        raise ValueError(f"the file is corrupted: its streams do not decode ({type(e).__name__})") from None
    if hashlib.sha256(decoded.astype(np.uint8).tobytes()).digest() != rows_digest:
        raise ValueError("the file is corrupted: the decoded rows differ from the ones compressed (their SHA-256 "
                         "does not match)")
    return torch.as_tensor(decoded, dtype=torch.float32)




# -- channel simulation: one exact sample of q(z|x), sent as candidate indices (Poisson functional representation) --

CANDIDATE_CHUNK = 4096  # candidates drawn per step of the search (the receiver draws the same chunks)
WIDEN = 1.05  # a collapsed dimension's candidates are this much wider than its widest q (``ChannelCode``)


@dataclass
class ChannelCode:
    """What ``channel_simulation`` sent.

    Attributes:
        bits: [N] the code length of each row's indices, each index K >= 1 under the Elias delta code
            (floor(log2 K) + 2 floor(log2(floor(log2 K) + 1)) + 1 bits).
        kl_bits: [N] KL(q(z|x) || p(z)) of each row, in bits: the rate the channel costs.
        z: [N, d] the sample each row sent, exactly distributed as q(z|x), which the receiver rebuilds.
        indices: [N, B] the chosen candidate of each row and block (1-based).
        blocks: the latent dimensions of each block (a tuple of tuples), shared by sender and receiver.
        proposal_kl_bits: [N] KL(q(z|x) || proposal) of each row, in bits: what the search's candidates make it
            cost; equal to ``kl_bits`` where the proposal is the prior.
        bound_bits: [N] the sum over blocks of KL + log2(KL + 1) + 4 bits, KL against the proposal (Li & El Gamal
            2018's bound for the candidates actually drawn).
        proposal_scale: [d] (float64) the std of the shared candidates, centred on the prior's mean: the prior's
            own, except where some row's q(z_j|x) is at least 1/``WIDEN`` as wide (a collapsed dimension), where it
            is ``WIDEN`` times the widest q so that max q / proposal stays finite and the search ends (side
            information, like the blocks; it adds about 0.001 to 0.03 nats of KL per collapsed dimension).
    """

    bits: Tensor
    kl_bits: Tensor
    z: Tensor
    indices: Tensor
    blocks: tuple[tuple[int, ...], ...]
    proposal_kl_bits: Tensor
    bound_bits: Tensor
    proposal_scale: Tensor


def elias_delta_bits(k: int) -> int:
    """The Elias delta code length of the integer k >= 1, in bits."""
    n = k.bit_length() - 1  # floor(log2 k)
    return n + 2 * ((n + 1).bit_length() - 1) + 1


def _candidates(loc: Tensor, scale: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One chunk of the shared randomness: candidates [M, b] from the prior N(loc, scale^2) and their exponential
    waiting times [M] (float64)."""
    z = loc + scale * torch.randn(CANDIDATE_CHUNK, len(loc), generator=generator, dtype=torch.float64)
    waits = torch.empty(CANDIDATE_CHUNK, dtype=torch.float64).exponential_(1.0, generator=generator)
    return z, waits


def _generator(seed: int, row: int, block: int) -> torch.Generator:
    """The shared randomness of one row and block: the same stream at the sender and the receiver."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + row) * 10_007 + block) % 2**63)


def _log_max_ratio(q_loc: Tensor, q_scale: Tensor, p_loc: Tensor, p_scale: Tensor) -> Tensor:
    """log max_z q(z) / p(z) of elementwise Gaussians q and p, p wider than q (broadcast shapes; nats): the ratio
    peaks at z* = (loc_q s_p^2 - loc_p s_q^2) / (s_p^2 - s_q^2). Its sum over a block is D_inf(q || p), which sets
    how many candidates the block's search draws (about e^D_inf)."""
    peak = (q_loc * p_scale**2 - p_loc * q_scale**2) / (p_scale**2 - q_scale**2)
    q, p = torch.distributions.Normal(q_loc, q_scale), torch.distributions.Normal(p_loc, p_scale)
    return q.log_prob(peak) - p.log_prob(peak)


def _block_sample(q_loc: Tensor, q_scale: Tensor, p_loc: Tensor, p_scale: Tensor, *,
                  generator: torch.Generator) -> tuple[int, Tensor]:
    """The Poisson functional representation of q against p for one block (Li & El Gamal 2018): candidates
    Z_i ~ p with arrival times T_i (a unit Poisson process); the index K = argmin T_i p(Z_i) / q(Z_i) gives Z_K ~ q
    exactly. The search stops once T_i / max(q/p) passes the best score, which no later candidate can beat; p is
    wider than q in every dimension (``channel_simulation``'s proposal), so max q/p is finite."""
    q = torch.distributions.Normal(q_loc, q_scale)
    p = torch.distributions.Normal(p_loc, p_scale)
    log_max = _log_max_ratio(q_loc, q_scale, p_loc, p_scale).sum().item()
    best, best_index, best_z, time, seen = math.inf, 0, q_loc, 0.0, 0
    while True:
        z, waits = _candidates(p_loc, p_scale, generator)
        times = time + waits.cumsum(0)
        scores = times.log() - (q.log_prob(z) - p.log_prob(z)).sum(-1)
        i = int(scores.argmin())
        if scores[i].item() < best:
            best, best_index, best_z = scores[i].item(), seen + i + 1, z[i]
        time, seen = times[-1].item(), seen + CANDIDATE_CHUNK
        if math.log(time) - log_max > best:
            return best_index, best_z


def _block_candidate(index: int, p_loc: Tensor, p_scale: Tensor, generator: torch.Generator) -> Tensor:
    """The receiver's side: candidate ``index`` (1-based) of the shared stream."""
    chunk = (index - 1) // CANDIDATE_CHUNK
    for _ in range(chunk + 1):
        z, _ = _candidates(p_loc, p_scale, generator)
    return z[(index - 1) % CANDIDATE_CHUNK]


def _search_bits(peak: Tensor) -> float:
    """log2 of the mean over rows of 2^D, for the rows' D_inf(q || p) in bits [N]: the log2 of the expected number
    of candidates a block's search draws, up to a small factor (about 2^D each)."""
    return ((torch.logsumexp(peak * math.log(2), 0) - math.log(len(peak))) / math.log(2)).item()


def _blocks(peak: Tensor, block_bits: float) -> tuple[tuple[int, ...], ...]:
    """Consecutive latent dimensions grouped so that each block's expected search, the mean over the rows of
    2^D for the rows' per-dimension D = log2 max q/p [N, d] (bits; D_inf, at least the KL), stays under
    2^``block_bits`` candidates (a dimension whose own exceeds it stands alone). The mean of 2^D, not of D: a few
    rows with a large D set the cost; D, not the KL: where q is nearly as wide as p, max q/p far exceeds the KL."""
    blocks: list[list[int]] = [[]]
    total = torch.zeros(len(peak), dtype=peak.dtype)
    for j in range(peak.shape[1]):
        if blocks[-1] and _search_bits(total + peak[:, j]) > block_bits:
            blocks.append([])
            total = torch.zeros_like(total)
        blocks[-1].append(j)
        total = total + peak[:, j]
    return tuple(tuple(b) for b in blocks)


SEARCH_LIMIT_BITS = 36  # refuse a channel simulation whose expected search passes 2^36 candidates (hours)


def channel_simulation(model, x, *, seed: int = 0, block_bits: float = 8.0) -> ChannelCode:
    """Send one exact sample of q(z|x) for each row of x, at about its KL in bits, with the Poisson functional
    representation: sender and receiver share candidates drawn from the prior by ``seed`` (Li & El Gamal 2018;
    Havasi et al. 2019; Theis & Yosri 2022). The latent dimensions are grouped into blocks whose expected search,
    the mean over rows of max q/p, stays under 2^``block_bits`` candidates (``_blocks``), so that each block's
    search stays cheap; a search that would take hours is refused up front with its estimate.

    Args:
        model: a protocol model with a diagonal Gaussian posterior and a diagonal Gaussian prior.
        x: [N, D] rows (any values the model scores).
        seed: the shared randomness.
        block_bits: log2 of the most candidates one block's search draws on average over the rows.

    Returns:
        the ``ChannelCode``: bits, kl_bits, z, indices, blocks and the bound KL + log2(KL + 1) + 4 per block
        (KL against the candidates' proposal: the prior, a little wider in collapsed dimensions).

    Raises:
        ValueError: another posterior or prior.
    """
    check_number("seed", seed, low=0, integer=True)
    check_number("block_bits", block_bits, low=1)
    x = torch.as_tensor(x, dtype=torch.float32)
    model = model.eval() if isinstance(model, torch.nn.Module) else model
    with torch.no_grad():
        q = model.posterior(x)
        if diagonal_normal(q) is None:
            raise ValueError("channel simulation needs a diagonal Gaussian posterior; got "
                             f"{type(q).__name__}")
        q_loc, q_scale = (t.double() for t in diagonal_normal(q))
        prior = _prior_loc_scale(model.prior())
        if prior is None:
            raise ValueError("channel simulation needs a prior with independent Gaussian dimensions")
        p_loc, p_scale = prior
    proposal = torch.maximum(p_scale, WIDEN * q_scale.max(0).values)  # [d]
    posterior = torch.distributions.Normal(q_loc, q_scale)
    kl, searched = (torch.distributions.kl_divergence(posterior, torch.distributions.Normal(p_loc, scale))
                    / math.log(2) for scale in (p_scale, proposal))  # [N, d] bits, against the prior and proposal
    peak = _log_max_ratio(q_loc, q_scale, p_loc, proposal) / math.log(2)  # [N, d] bits
    blocks = _blocks(peak, block_bits)
    expected = _search_bits(torch.stack([peak[:, list(dims)].sum(-1) for dims in blocks]).flatten()) + \
        math.log2(len(x) * len(blocks))
    if expected > SEARCH_LIMIT_BITS:
        raise ValueError(f"channel simulation would draw about 2^{expected:.0f} candidates for these rows (hours; "
                         f"the search of a block grows as 2^(log2 max q/p) and some rows' is large in a single "
                         f"dimension): send fewer rows, or a model with a smaller rate")
    indices = torch.zeros(len(x), len(blocks), dtype=torch.long)
    z = torch.zeros_like(q_loc)
    for row in range(len(x)):
        for b, dims in enumerate(blocks):
            k, sample = _block_sample(q_loc[row, list(dims)], q_scale[row, list(dims)], p_loc[list(dims)],
                                      proposal[list(dims)], generator=_generator(seed, row, b))
            indices[row, b], z[row, list(dims)] = k, sample
    block_kl = torch.stack([searched[:, list(dims)].sum(-1) for dims in blocks], dim=-1)  # [N, B]
    bits = torch.tensor([[float(elias_delta_bits(int(k))) for k in row] for row in indices.tolist()]).sum(-1)
    bound = (block_kl + torch.log2(block_kl + 1) + 4).sum(-1)
    return ChannelCode(bits=bits, kl_bits=kl.sum(-1), z=z.float(), indices=indices, blocks=blocks,
                       proposal_kl_bits=searched.sum(-1), bound_bits=bound, proposal_scale=proposal)


def channel_decode(prior, code: ChannelCode, seed: int = 0) -> Tensor:
    """The samples [N, d] the indices of ``code`` name, rebuilt from the prior and the shared seed alone (no x).

    Args:
        prior: p(z), a diagonal Gaussian (a model's ``prior()``).
        code: what ``channel_simulation`` sent (its ``indices`` and ``blocks``).
        seed: the shared randomness it used.
    """
    p_loc = _prior_loc_scale(prior)[0]  # type: ignore[index]  # channel_simulation checked it
    p_scale = code.proposal_scale.double()
    z = torch.zeros(len(code.indices), len(p_loc), dtype=torch.float64)
    for row, ks in enumerate(code.indices.tolist()):
        for b, (dims, k) in enumerate(zip(code.blocks, ks, strict=True)):
            z[row, list(dims)] = _block_candidate(k, p_loc[list(dims)], p_scale[list(dims)],
                                                  _generator(seed, row, b))
    return z.float()


__all__ = ["CodeLength", "bits_back", "compress", "decompress", "fingerprint", "header_bytes", "DEFAULT_BINS",
           "ChannelCode", "channel_simulation", "channel_decode", "elias_delta_bits"]
