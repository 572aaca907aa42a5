"""The hierarchical VAE: L stochastic layers z_1 (nearest the data) ... z_L, Gaussian conditionals, MLP networks.

Generative model   p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1),  p(z_L) = N(0, I),
                   p(z_l | z_{l+1}) = N(mu_l(z_{l+1}), diag sigma_l(z_{l+1})^2).
Inference          bottom_up: q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1})   (Burda et al. 2016's two-layer models);
                   top_down:  q(z_L | x) q(z_{L-1} | z_L, x) ... q(z_1 | z_2, x), every factor reading one shared
                   deterministic bottom-up pass h_1(x), ..., h_L(x) (the ladder VAE of Sønderby et al. 2016; NVAE's
                   order). The true posterior factorises the same way in both orders (p(z_l | z_{>l}, x) =
                   p(z_l | z_{l+1}, x), and p(z_{l+1} | z_{<=l}, x) = p(z_{l+1} | z_l)).

The model follows the ibkit protocol on the concatenated code z = (z_1, ..., z_L) [N, sum d_l]: ``posterior(x)``
has ``rsample`` and ``log_prob`` for any z, ``prior()`` is the generative chain, and ``log_likelihood(x, z)`` reads
z_1. The rate splits by layer into the conditional KLs E_q[log q(z_l | .) - log p(z_l | z_{l+1})]
(``HierarchicalPosterior.unit_kl``), which the KL schedules' free bits clip layer by layer.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Normal, constraints

from ibkit.distributions import rsample_from
from ibkit.models.networks import decoder_network, encoder_network, image_features, mlp
from ibkit.models.schedules import RateScheduled, ScheduledConfig
from ibkit.registry import register_model

_NO_SAMPLE_SHAPE = torch.Size()
INFERENCE = ("top_down", "bottom_up")


@dataclass(frozen=True)
class HVAEConfig(ScheduledConfig):
    """The shared fields (``ModelConfig``), beta and the KL schedules (``ibkit.models.schedules.ScheduledConfig``)
    and the layers.

    Args:
        latent_dims: (d_1, ..., d_L), z_1 nearest the data; they sum to latent_dim. None: one layer of latent_dim.
        inference: "top_down" (the ladder's order) or "bottom_up".
        layer_hidden: widths of the networks between latent layers (p(z_l | z_{l+1}), q's z -> z maps, the
            ladder's h_l -> h_{l+1}); None: ``hidden``.

    Raises:
        ValueError: ``latent_dims`` that do not sum to ``latent_dim`` (and the shared fields' checks).
    """

    # (d_1, ..., d_L), z_1 nearest the data; they sum to latent_dim. None: one layer of latent_dim
    latent_dims: tuple[int, ...] | None = field(default=None, metadata={"low": 1, "id": "layers"})
    inference: str = field(default="top_down", metadata={"choices": INFERENCE, "id": ""})
    # widths of the networks between latent layers (p(z_l | z_{l+1}), q's z -> z maps, the ladder's h_l -> h_{l+1})
    layer_hidden: tuple[int, ...] | None = field(default=None, metadata={"low": 1})  # None: hidden

    def __post_init__(self):
        super().__post_init__()
        if self.latent_dims is None:
            object.__setattr__(self, "latent_dims", (self.latent_dim,))
        elif sum(self.latent_dims) != self.latent_dim:
            raise ValueError(f"latent_dims={self.latent_dims!r} must sum to latent_dim={self.latent_dim} (the width "
                             f"of the concatenated code); pass latent_dim={sum(self.latent_dims)}")
        if self.layer_hidden is None:
            object.__setattr__(self, "layer_hidden", self.hidden)


def gaussian(params: Tensor) -> Normal:
    """N(loc, exp(logvar / 2)^2) elementwise from a network's output [..., 2 d] = (loc, logvar)."""
    loc, logvar = params.chunk(2, dim=-1)
    return Normal(loc, torch.exp(0.5 * logvar), validate_args=False)


def trunk(in_dim: int, widths: tuple[int, ...]) -> nn.Sequential:
    """Linear + ReLU layers in_dim -> widths[0] -> ... (a deterministic feature map; () is the identity)."""
    return nn.Sequential(*mlp(in_dim, widths[:-1], widths[-1]), nn.ReLU()) if widths else nn.Sequential()


def _joined(h: Tensor, z: Tensor) -> Tensor:
    """[h, z] on the last axis, their leading axes broadcast (h [N, H] against z [S, N, d] or [r, 1, d])."""
    lead = torch.broadcast_shapes(h.shape[:-1], z.shape[:-1])
    return torch.cat([h.expand(*lead, h.shape[-1]), z.expand(*lead, z.shape[-1])], dim=-1)


@register_model("hvae", label="hierarchical VAE", marker="P")
class HierarchicalVAE(RateScheduled):
    """A VAE with ``latent_dims`` = (d_1, ..., d_L) stochastic layers and ``inference`` "top_down" or "bottom_up"
    (module docstring). loss = -log p(x | z_1) + the scheduled rate penalty (beta R at beta = 1: the negative ELBO).

    Modules: ``encoder`` (everything q(z|x) uses: ``encoder.trunk`` and ``encoder.heads``), ``priors`` (the networks
    of p(z_l | z_{l+1}), l < L) and ``decoder`` (p(x | z_1)), so ``trainable="encoder"`` trains q alone.

    Args:
        config: an ``HVAEConfig`` (``build`` and ``ibkit.build_model`` make it from keyword fields).
    """

    Config = HVAEConfig
    config: HVAEConfig
    encoder: nn.ModuleDict  # type: ignore[assignment]  # the inference networks, not the base's one MLP
    STARTS_AT_MARGINAL = False

    def __init__(self, config: HVAEConfig):
        super().__init__(config)
        dims, hidden, between = self.latent_dims, config.hidden, tuple(config.layer_hidden or ())
        self.encoder = nn.ModuleDict()
        if config.inference == "bottom_up":  # q(z_1 | x), then q(z_{l+1} | z_l)
            self.encoder["heads"] = nn.ModuleList(
                [encoder_network(config, 2 * dims[0])] +
                [mlp(dims[k], between, 2 * dims[k + 1]) for k in range(len(dims) - 1)])
        else:  # h_1 = f(x), h_{l+1} = g_l(h_l); q(z_L | h_L), q(z_l | h_l, z_{l+1})
            features, width = image_features(config)  # convolutions for network="conv"; nothing for an MLP
            widths = [hidden[-1] if hidden else width]
            trunks = [nn.Sequential(*features, *trunk(width, hidden))]
            for _ in dims[1:]:
                trunks.append(trunk(widths[-1], between))
                widths.append(between[-1] if between else widths[-1])
            self.encoder["trunk"] = nn.ModuleList(trunks)
            self.encoder["heads"] = nn.ModuleList(
                [nn.Linear(widths[k] + dims[k + 1], 2 * dims[k]) for k in range(len(dims) - 1)] +
                [nn.Linear(widths[-1], 2 * dims[-1])])
        self.priors = nn.ModuleList(mlp(dims[k + 1], between, 2 * dims[k]) for k in range(len(dims) - 1))
        self.decoder = decoder_network(config, dims[0])

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """(d_1, ..., d_L), z_1 nearest the data."""
        return typing.cast(tuple[int, ...], self.config.latent_dims)

    def layers(self, z: Tensor) -> list[Tensor]:
        """z [..., sum d_l] split into its layers [z_1 [..., d_1], ..., z_L].

        Args:
            z: [..., sum d_l] concatenated codes.

        Returns:
            [z_1 [..., d_1], ..., z_L [..., d_L]].
        """
        return list(z.split(self.latent_dims, dim=-1))

    def encoder_width(self) -> int:
        return 1  # the base's placeholder encoder, replaced in __init__

    def posterior(self, x: Tensor) -> HierarchicalPosterior:
        """q(z|x) over z = (z_1, ..., z_L): batch_shape [N], event_shape [sum d_l].

        Args:
            x: [N, D] data.

        Returns:
            the ``HierarchicalPosterior`` of x.
        """
        return HierarchicalPosterior(self, x)

    def posterior_params(self, x: Tensor) -> Tensor:
        """Refused: a hierarchical VAE has no per-example variational parameters.

        Args:
            x: [N, D] data.

        Raises:
            ValueError: always (``amortization_gap`` needs a one-layer model).
        """
        raise ValueError("a hierarchical VAE has no per-example variational parameters: its q(z_l | .) are networks "
                         "of the other layers (amortization_gap needs a one-layer model)")

    def prior(self) -> HierarchicalPrior:
        """p(z) = p(z_L) prod_l p(z_l | z_{l+1}): batch_shape [], event_shape [sum d_l].

        Returns:
            the ``HierarchicalPrior``.
        """
        return HierarchicalPrior(self)

    def layer_prior(self, k: int, above: Tensor | None) -> Normal:
        """p(z_l | z_{l+1} = above) elementwise for layer index k = l - 1 (k = 0 is z_1); N(0, 1) for the top
        (above None).

        Args:
            k: the layer index l - 1.
            above: [..., d_{l+1}] the layer above, or None for the top layer.

        Returns:
            p(z_l | z_{l+1}), elementwise Normal [..., d_l].
        """
        if above is None:
            d = self.latent_dims[k]
            return Normal(self._prior_loc[:d], self._prior_scale[:d], validate_args=False)
        return gaussian(self.priors[k](above))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z_1) for x [N, D] and z [..., N, sum d_l]: [..., N].

        Args:
            x: [N, D] data.
            z: [..., N, sum d_l] codes; only z_1 is read.

        Returns:
            [..., N] log p(x | z_1) in nats.
        """
        return self.likelihood.log_prob(x, self.decoder(z[..., : self.latent_dims[0]]))

    def decode(self, z: Tensor) -> Tensor:
        """E[x | z_1], the likelihood's mean.

        Args:
            z: [..., N, sum d_l] codes; only z_1 is read.

        Returns:
            [..., N, D] E[x | z_1].
        """
        return self.likelihood.mean(self.decoder(z[..., : self.latent_dims[0]]))

    def kl_terms(self, q: Distribution, z: Tensor) -> Tensor:
        """The conditional KL of each layer [N, L] at the samples z [1, N, d] (``HierarchicalPosterior.layer_kl``).

        Args:
            q: the ``HierarchicalPosterior``, batch_shape [N].
            z: [1, N, d] samples of q.

        Returns:
            [N, L] each layer's conditional KL in nats.
        """
        return typing.cast(HierarchicalPosterior, q).layer_kl(z).mean(0)

    def rate_groups(self) -> Tensor:
        """Free bits clip each layer's minibatch-mean KL at lambda d_l (Kingma et al. 2016's groups).

        Returns:
            [L] the layers' widths (d_1, ..., d_L).
        """
        return torch.tensor([float(d) for d in self.latent_dims])


class HierarchicalPosterior(Distribution):
    """q(z|x) of a ``HierarchicalVAE`` over z = (z_1, ..., z_L): batch_shape [N], event_shape [sum d_l].

    ``rsample`` draws ancestrally (bottom-up from z_1, or top-down from z_L); ``log_prob(z)`` = sum_l
    log q(z_l | its parents in z, x) for any z [..., N, d] (value [r, 1, d] broadcasts against batch [m]).
    ``unit_kl(z)``: each unit's conditional KL term at the path z (closed form given the parents where q and p of a
    layer condition on the same values, else its log ratio), whose sum is an unbiased estimate of KL(q || p).
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, model: HierarchicalVAE, x: Tensor):
        self.model, self.x = model, x
        self.top_down = model.config.inference == "top_down"
        heads = typing.cast(nn.ModuleList, model.encoder["heads"])
        self.heads = list(heads)
        if self.top_down:
            h, self.features = x, []
            for f in typing.cast(nn.ModuleList, model.encoder["trunk"]):
                h = f(h)
                self.features.append(h)
        super().__init__(x.shape[:-1], torch.Size([model.latent_dim]), validate_args=False)

    def layer(self, k: int, z: list[Tensor | None]) -> Normal:
        """q(z_l | its parents) elementwise for layer index k = l - 1 (k = 0 is z_1), its parents read from the
        layers ``z`` (a list indexed the same way)."""
        if self.top_down:
            top = k == len(self.heads) - 1
            return gaussian(self.heads[k](self.features[k] if top else
                                          _joined(self.features[k], typing.cast(Tensor, z[k + 1]))))
        return gaussian(self.heads[k](self.x if k == 0 else z[k - 1]))

    def order(self) -> range:
        """The layers in the order they are drawn."""
        n = len(self.heads)
        return range(n - 1, -1, -1) if self.top_down else range(n)

    def rsample_from(self, eps: Tensor) -> Tensor:
        """The ancestral sample [S, N, d] made of the standard normal noise eps [S, N, d]."""
        noise = self.model.layers(eps)
        z: list[Tensor | None] = [None] * len(noise)
        for k in self.order():
            q = self.layer(k, z)
            z[k] = q.loc + q.scale * noise[k]
        return torch.cat(typing.cast(list[Tensor], z), dim=-1)

    def rsample(self, sample_shape=_NO_SAMPLE_SHAPE) -> Tensor:
        shape = self._extended_shape(sample_shape)
        return self.rsample_from(torch.empty(shape, dtype=self.x.dtype, device=self.x.device).normal_())

    def log_prob(self, value: Tensor) -> Tensor:
        z: list[Tensor | None] = list(self.model.layers(value))
        return sum(self.layer(k, z).log_prob(z[k]).sum(-1) for k in range(len(z)))  # type: ignore[return-value]

    def unit_kl(self, value: Tensor) -> Tensor:
        """Each unit's conditional KL term [..., N, d] at the path ``value`` [..., N, d]: KL(q(z_l | .) ||
        p(z_l | z_{l+1})) in closed form where both condition on values drawn before z_l (every layer top-down, the
        top layer bottom-up), else the log ratio log q(z_l | z_{l-1}) - log p(z_l | z_{l+1}) (bottom-up, l < L:
        z_{l+1} is drawn after z_l). Summed over units and averaged over draws: KL(q(z|x) || p(z)); summed over
        the layers l and above: a bound on I(X; z_{>=l})."""
        z: list[Tensor | None] = list(self.model.layers(value))
        top = len(z) - 1
        terms = []
        for k in range(len(z)):
            q, p = self.layer(k, z), self.model.layer_prior(k, None if k == top else z[k + 1])
            if self.top_down or k == top:
                terms.append(torch.distributions.kl_divergence(q, p))
            else:
                terms.append(q.log_prob(z[k]) - p.log_prob(z[k]))
        lead = torch.broadcast_shapes(value.shape[:-1], *(t.shape[:-1] for t in terms))
        return torch.cat([t.expand(*lead, t.shape[-1]) for t in terms], dim=-1)

    def layer_kl(self, value: Tensor) -> Tensor:
        """``unit_kl`` summed within each layer: [..., N, L]."""
        return torch.stack([t.sum(-1) for t in self.model.layers(self.unit_kl(value))], dim=-1)

    def kl_samples(self, p: Distribution, z: Tensor) -> Tensor:
        """One unbiased estimate of KL(q || p) per sample z [S, N, d] (``unit_kl`` summed), p the model's prior;
        for another p the log ratio."""
        if isinstance(p, HierarchicalPrior) and p.model is self.model:
            return self.unit_kl(z).sum(-1)
        return self.log_prob(z) - p.log_prob(z)

    def layer_means(self, n_samples: int = 256, seed: int = 0) -> Tensor:
        """E_q[z] [N, d], Rao-Blackwellised: the mean over ``n_samples`` ancestral draws (a fixed seed) of each
        layer's conditional mean given its drawn parents; exact for the first layer drawn."""
        gen = torch.Generator(self.x.device).manual_seed(seed)
        noise = self.model.layers(torch.randn(n_samples, *self.batch_shape, self.model.latent_dim, generator=gen,
                                              device=self.x.device, dtype=self.x.dtype))
        z: list[Tensor | None] = [None] * len(noise)
        means: list[Tensor | None] = [None] * len(noise)
        for k in self.order():
            q = self.layer(k, z)
            z[k] = q.loc + q.scale * noise[k]
            means[k] = q.loc.expand_as(noise[k]).mean(0)
        return torch.cat(typing.cast(list[Tensor], means), dim=-1)

    @property
    def mean(self) -> Tensor:
        """E_q[z] [N, d] (``layer_means``)."""
        return self.layer_means()


class HierarchicalPrior(Distribution):
    """p(z) = p(z_L) prod_l p(z_l | z_{l+1}) of a ``HierarchicalVAE``: batch_shape [], event_shape [sum d_l]."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, model: HierarchicalVAE):
        self.model = model
        super().__init__(torch.Size(), torch.Size([model.latent_dim]), validate_args=False)

    def rsample(self, sample_shape=_NO_SAMPLE_SHAPE) -> Tensor:
        dims = self.model.latent_dims
        z: list[Tensor] = []
        above = None
        for k in range(len(dims) - 1, -1, -1):
            p = self.model.layer_prior(k, above)
            loc = p.loc.expand(*sample_shape, dims[k]) if above is None else p.loc
            above = loc + p.scale * torch.randn_like(loc)
            z.insert(0, above)
        return torch.cat(z, dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        z = self.model.layers(value)
        top = len(z) - 1
        return sum(self.model.layer_prior(k, None if k == top else z[k + 1]).log_prob(z[k]).sum(-1)
                   for k in range(len(z)))  # type: ignore[return-value]


@rsample_from.register(HierarchicalPosterior)
def _rsample_hierarchical(q: HierarchicalPosterior, eps: Tensor) -> Tensor:
    return q.rsample_from(eps)


__all__ = ["HVAEConfig", "HierarchicalVAE", "HierarchicalPosterior", "HierarchicalPrior", "gaussian"]
