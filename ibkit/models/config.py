"""ModelConfig: every hyper-parameter of an autoencoder, validated once."""

from __future__ import annotations

from dataclasses import dataclass

from ibkit.checks import check_choice, check_number

KINDS = ("ae", "sparse_ae", "noisy_ae", "vae")
LIKELIHOOD_NAMES = ("bernoulli", "gaussian")
POSTERIOR_NAMES = ("diagonal", "full", "iaf")
CODE_BOUNDS = ("tanh", None)


@dataclass(frozen=True)
class ModelConfig:
    kind: str  # ae | sparse_ae | noisy_ae | vae
    input_dim: int  # D, width of the data
    latent_dim: int  # d, width of the code
    hidden: tuple[int, ...] = (256, 256)  # encoder widths (decoder mirrors them); () = linear maps
    decoder_hidden: tuple[int, ...] | None = None  # decoder widths when they differ; None mirrors hidden
    likelihood: str = "bernoulli"  # bernoulli (logits) | gaussian (mean + one learned log-scale)
    scale: float | None = None  # gaussian: a fixed decoder std s instead of a learned one
    posterior: str = "diagonal"  # q(z|x) family of the vae: diagonal | full (Cholesky factor) | iaf
    flow_steps: int = 2  # iaf: number of autoregressive steps
    beta: float = 1.0  # vae: weight of the rate in distortion + beta * rate
    noise: float | None = None  # noisy_ae: std of the fixed Gaussian channel noise (required, > 0)
    sparsity: float = 0.0  # sparse_ae: weight of the L1 penalty on the code
    code_bound: str | None = "auto"  # noisy_ae: "tanh" (power <= 1 per dim, the default) or None (unbounded)
    seed: int = 0  # seed of the weight initialisation

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        check_number("input_dim", self.input_dim, low=1, integer=True)
        check_number("latent_dim", self.latent_dim, low=1, integer=True)
        hidden = self.hidden
        widths_ok = not isinstance(hidden, (int, str)) and all(
            isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden
        )
        if not widths_ok:
            raise ValueError(
                f"hidden={hidden!r} must be a tuple of positive layer widths, e.g. (256, 256), or () for linear"
            )
        object.__setattr__(self, "hidden", tuple(hidden))
        if self.decoder_hidden is None:
            object.__setattr__(self, "decoder_hidden", tuple(reversed(self.hidden)))
        elif isinstance(self.decoder_hidden, (int, str)) or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.decoder_hidden):
            raise ValueError(f"decoder_hidden={self.decoder_hidden!r} must be a tuple of positive layer widths, "
                             "() for a linear decoder, or None to mirror hidden")
        object.__setattr__(self, "decoder_hidden", tuple(self.decoder_hidden))
        check_choice("likelihood", self.likelihood, LIKELIHOOD_NAMES)
        if self.scale is not None:
            check_number("scale", self.scale, low=0, low_open=True)
            if self.likelihood != "gaussian":
                raise ValueError(f"scale={self.scale!r} applies only to likelihood='gaussian' (a fixed decoder "
                                 f"std), not likelihood={self.likelihood!r}")
        check_choice("posterior", self.posterior, POSTERIOR_NAMES)
        if self.posterior != "diagonal" and self.kind != "vae":
            raise ValueError(f"posterior={self.posterior!r} applies only to kind='vae'; kind={self.kind!r} has no "
                             "posterior family (noisy_ae's channel is fixed, ae and sparse_ae have none)")
        check_number("beta", self.beta, low=0)
        check_number("sparsity", self.sparsity, low=0)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("flow_steps", self.flow_steps, low=1, integer=True)
        if self.kind == "noisy_ae":
            if self.noise is None:
                raise ValueError("noise=None: kind='noisy_ae' needs the channel noise std, e.g. noise=0.1")
            check_number("noise", self.noise, low=0, low_open=True)
        elif self.noise is not None:
            raise ValueError(f"noise={self.noise!r} applies only to kind='noisy_ae', not kind={self.kind!r}")
        if self.sparsity and self.kind != "sparse_ae":
            raise ValueError(f"sparsity={self.sparsity!r} applies only to kind='sparse_ae', not kind={self.kind!r}")
        bound = self.code_bound
        if bound == "auto":
            bound = "tanh" if self.kind == "noisy_ae" else None
        check_choice("code_bound", bound, CODE_BOUNDS)
        if bound is not None and self.kind != "noisy_ae":
            raise ValueError(f"code_bound={bound!r} applies only to kind='noisy_ae', not kind={self.kind!r}")
        object.__setattr__(self, "code_bound", bound)
