"""Shared plumbing of the estimators: the one input check (``prepare``), devices, seeding, chunking, the progress
of long work (``decoder_progress``) and ``remembering``, for a caller that asks many estimators about the same
rows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import Tensor

from ibkit.checks import (
    check_code,
    check_log_likelihood,
    check_model_data,
    check_number,
    check_posterior,
    check_prior,
)
from ibkit.progress import Progress, Refusal
from ibkit.seeding import seeded

DEFAULT_CHUNK = 16384  # (sample, row) pairs per decoder pass: ~0.3 GB for a 784-512-512 decoder
CHECK_ROWS = 8  # rows of x an estimator first runs through the model to check what it returns
MEMORY_BUDGET = 1 << 30  # bytes the working set of one iwae or mi_bounds call may take (memory_budget=None)
_CHECKED: ContextVar[dict | None] = ContextVar("ibkit_checked", default=None)  # the checks done (``remembering``)


def model_device(model) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model without any)."""
    for t in (*getattr(model, "parameters", lambda: ())(), *getattr(model, "buffers", lambda: ())()):
        return t.device
    return torch.device("cpu")


def prepare(model, x, call: str, *, posterior: bool = True, prior: bool = True, likelihood: bool = True) -> Tensor:
    """The one validation at an estimator's entry: x [N, D] checked for ``model`` and moved to its device.

    ``call`` names the estimator in messages; the flags say which parts of the protocol (``ibkit.interface``) it
    uses: ``posterior`` (else ``encode`` will do), ``prior``, ``likelihood`` (``log_likelihood``). In order:
    the methods are there; x is a finite [N, D] tensor of the model's ``input_dim`` whose values the model accepts
    (its ``check_data``, else its ``support``); and on the first ``CHECK_ROWS`` rows, what the model returns has
    the protocol's shapes (q(z|x) batch [n], event [d]; p(z) event [d]; a code [n, d]) and log p(x|z) is finite.
    """
    _check_methods(model, call, posterior=posterior, prior=prior, likelihood=likelihood)
    x = check_model_data(model, x).to(model_device(model))
    checked, key = _CHECKED.get(), (id(model), rows_key(x[:CHECK_ROWS]))
    done = None if checked is None else checked.get(key)  # (prior, likelihood): what a check of these rows covered
    if done is None or (prior and not done[0]) or (likelihood and not done[1]):
        with seeded_no_grad(0, x.device):
            _check_outputs(model, x[:CHECK_ROWS], prior, likelihood)
        if checked is not None:
            checked[key] = (prior or bool(done and done[0]), likelihood or bool(done and done[1]))
    return x


def rows_key(x: Tensor) -> tuple:
    """What tells a rows tensor from any other while it is alive: its storage, offset, shape, strides, type, device
    and version (which in-place changes bump)."""
    return (x.data_ptr(), tuple(x.shape), x.stride(), x.dtype, x.device, x._version)


@contextlib.contextmanager
def remembering(model):
    """Within the block, ``model.posterior(x)`` is computed once per rows tensor x (``rows_key``; x is held, so its
    memory is not reused for other rows meanwhile) and ``prepare``'s protocol check once per rows: for a caller
    that asks many estimators about the same rows (``ibkit.analyse``), where the encoder is the dear part (an image
    autoencoder's). The posterior is a function of x, so no number changes. The model is left as it was after.

    Args:
        model: a protocol model (or a deterministic code, whose checks alone are remembered).

    Yields:
        the model.
    """
    own = getattr(model, "posterior", None)
    remembered: dict[tuple, tuple] = {}

    def posterior(x: Tensor):
        key = rows_key(x)
        if key not in remembered:
            remembered[key] = (x, own(x))
        return remembered[key][1]

    token = _CHECKED.set({})
    shadowed = callable(own) and hasattr(model, "__dict__") and "posterior" not in vars(model)
    if shadowed:
        object.__setattr__(model, "posterior", posterior)  # an instance attribute over the class's method
    try:
        yield model
    finally:
        if shadowed:
            object.__delattr__(model, "posterior")
        _CHECKED.reset(token)


def has_posterior(model) -> bool:
    """Whether ``model`` has q(z|x) (``posterior``); without it an estimator uses its code ``encode``."""
    return callable(getattr(model, "posterior", None))


def has_prior(model) -> bool:
    return callable(getattr(model, "prior", None))


def has_likelihood(model) -> bool:
    """Whether ``model`` has the decoder's log p(x|z) (``log_likelihood``), which distortion, ELBO and IWAE need."""
    return callable(getattr(model, "log_likelihood", None))


def missing_likelihood(model, call: str) -> str:
    """The message for ``call`` (an estimator's name, or "each" for several) on a ``model`` without
    ``log_likelihood``: what it needs, what the model lacks, and the method's shapes."""
    return (f"{call} needs the decoder's log p(x|z): {type(model).__name__} has no log_likelihood(x, z) "
            "(x [N, D], z [S, N, d] -> [S, N])")


def _check_methods(model, call: str, *, posterior: bool, prior: bool, likelihood: bool) -> None:
    """Refuse a model without the methods ``call`` uses, saying which one is missing and what to do."""
    name, has_code = type(model).__name__, callable(getattr(model, "encode", None))
    if posterior and not has_posterior(model):
        if has_code:
            raise ValueError(
                f"{name} has no posterior q(z|x) (it is a deterministic code); {call} needs one: wrap the code in a "
                "probe channel, ibkit.estimators.probe(model, sigma)"
            )
        raise ValueError(f"{call} needs a latent-variable model (ibkit.interface.LatentVariableModel: posterior(x), "
                         f"prior(), log_likelihood(x, z)); {name} has no posterior(x)")
    if not (has_posterior(model) or has_code):
        raise ValueError(f"{call} needs posterior(x) -> q(z|x) or encode(x) -> z [N, d]; {name} has neither "
                         "(see ibkit.interface for the protocol)")
    if prior and not has_prior(model):
        raise ValueError(f"{call} needs the prior p(z): {name} has no prior() (a Distribution with event_shape [d], "
                         "e.g. Independent(Normal(torch.zeros(d), torch.ones(d)), 1))")
    if likelihood and not has_likelihood(model):
        raise ValueError(missing_likelihood(model, call))


def _check_outputs(model, rows: Tensor, prior: bool, likelihood: bool) -> None:
    """The protocol's shapes, and a finite log p(x|z), on a few rows [n, D] (see ``prepare``)."""
    name = type(model).__name__
    if has_posterior(model):
        q = model.posterior(rows)
        d = check_posterior(q, len(rows), name)
        z = q.sample((1,))  # [1, n, d]
    else:
        code = model.encode(rows)
        d = check_code(code, len(rows), name)
        z = code.unsqueeze(0)
    if prior:
        check_prior(model.prior(), d, name)
    if likelihood:
        check_log_likelihood(model.log_likelihood(rows, z), rows, z, name)


@contextlib.contextmanager
def seeded_no_grad(seed: int, device: torch.device):
    """An estimator's block: no autograd, torch's RNG seeded to ``seed``, the caller's state restored after."""
    check_number("seed", seed, low=0, integer=True)
    with seeded(seed, device), torch.no_grad():
        yield


def row_chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of range(n) of at most ``size`` rows."""
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def plan_chunks(n_samples: int, chunk_size: int) -> tuple[int, int]:
    """(samples per pass, rows per pass) so that one pass decodes at most ``chunk_size`` (sample, row) pairs."""
    check_number("chunk_size", chunk_size, low=1, integer=True)
    samples = min(n_samples, chunk_size)
    return samples, max(1, chunk_size // samples)


def decoder_progress(call: str, passes: int, device: torch.device, *, work: str, knobs: str, allow_long: bool,
                     at_most: bool = False) -> Progress:
    """The progress of an estimator's ``passes`` decoder passes ((sample, row) pairs through log p(x|z)): the one
    idiom of every estimator whose cost grows with a k or n_samples the caller picks (``ibkit.progress.Progress``: a
    bar on a terminal, a log line every 30 s). Unless ``allow_long``, the first chunks are a pilot, timed on this
    machine, and work estimated to take more than ``ibkit.progress.LONG_WORK`` (an hour) is refused there:

        ValueError: iwae with k=1000000000 on 359 rows needs 3.6e11 decoder passes, about 35 days at the measured
        1.2e5 passes/s on this machine; use a smaller k or fewer rows, or pass allow_long=True

    ``work`` names the call and its size ("iwae with k=1000000000 on 359 rows"), ``knobs`` what to make smaller
    ("k"), ``at_most`` that ``passes`` is an upper bound (work that may stop early). Update it with the pairs of
    each chunk; use it as a context manager.
    """
    if not isinstance(allow_long, bool):
        raise ValueError(f"allow_long={allow_long!r} must be True or False (True: run work estimated to take more "
                         "than an hour)")
    refusal = None if allow_long else Refusal(work, f"use a smaller {knobs} or fewer rows", at_most)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    return Progress(call, passes, "decoder passes", refusal=refusal, sync=sync)


def reduce(values: Tensor, per_example: bool) -> float | Tensor:
    """The mean over examples as a float, or the per-example values [N] on the CPU."""
    return values.cpu() if per_example else values.mean().item()


def budget_bytes(memory_budget: int | None) -> int:
    """The budget in bytes: ``memory_budget``, or ``MEMORY_BUDGET`` when None."""
    if memory_budget is None:
        return MEMORY_BUDGET
    check_number("memory_budget", memory_budget, low=1, integer=True)
    return int(memory_budget)


def too_large(call: str, needed: int, budget: int, *, what: str, remedy: str) -> ValueError:
    """The error of a request that cannot fit its memory budget even chunked, with the sizes."""
    return ValueError(f"{call} needs at least {_size(needed)} ({what}) but memory_budget is {_size(budget)}; "
                      f"{remedy}")


def _size(n_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def unit_count(model) -> int:
    """Activations per example of every layer of ``model`` (linear widths, and the feature maps of any module with an
    ``activations()`` method, as ibkit's convolutions have): what the memory estimates of training batches and
    estimator chunks scale with; 0 for an object that is no ``torch.nn.Module``."""
    if not isinstance(model, torch.nn.Module):
        return 0
    return sum(m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)) + \
        sum(int(getattr(m, "activations")()) for m in model.modules()  # noqa: B009 (a module method, typed Any)
            if callable(getattr(m, "activations", None)))
