"""The dataset record of a linear-Gaussian source: its rows and ``truth``, the chain that generated them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.distributions import MultivariateNormal

from ibkit.data.dataset import Dataset
from ibkit.data.gaussian.chain import LinearGaussianChain
from ibkit.data.gaussian.posteriors import TwoLayerPosteriors


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class LinearGaussianDataset(Dataset):
    """Rows drawn from a ``LinearGaussianChain``, with their true answers: ``ds.truth`` is the chain (in the role of
    the bmi benchmark's ``sampler.mutual_information()``), and the dataset answers what it knows by asking it.

    ``W``, ``b``, ``noise`` (and for two layers or more ``A``, ``layer_noise``) and the closed forms
    (``covariance``, ``log_px``, ``entropy``, ``mutual_information``, ``exact_posterior``, ``layer_information``,
    ...) are the chain's.

    Attributes:
        truth: the generating chain; x = W z_1 + b + sigma eps is its last step (W [D, d_1] float32, b [D] float32).

    Raises:
        ValueError: a ``truth`` that is not a ``LinearGaussianChain`` of the rows' width (and ``Dataset``'s checks).
    """

    truth: LinearGaussianChain

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.truth, LinearGaussianChain) or self.truth.input_dim != self.input_dim:
            got = f"input_dim={self.truth.input_dim}" if isinstance(self.truth, LinearGaussianChain) else (
                type(self.truth).__name__)
            raise ValueError(f"LinearGaussianDataset.truth must be a LinearGaussianChain with input_dim="
                             f"{self.input_dim} (the width of the rows); got {got}")

    # the chain's parameters

    @property
    def W(self) -> Tensor:
        """[D, d_1] float32, the loading matrix of x."""
        return self.truth.W

    @property
    def b(self) -> Tensor:
        """[D] float32, the offset of x."""
        return self.truth.b

    @property
    def noise(self) -> float:
        """sigma, the observation noise std."""
        return self.truth.noise

    @property
    def A(self) -> Tensor:
        """[d_1, d_2] float32, the loading matrix of z_1 (two layers or more)."""
        return self.truth.A

    @property
    def layer_noise(self) -> float:
        """s_1, the std of z_1 given z_2 (two layers or more)."""
        return self.truth.layer_noise

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """(d_1, ..., d_L), nearest the data first."""
        return self.truth.latent_dims

    def true_model(self, *args, **kwargs) -> LinearGaussianChain:
        """``truth``, the generating chain (the name older code calls). The trainable VAEs on the generating
        decoder that ``true_model(posterior=...)`` and ``true_model(inference)`` built are
        ``ibkit.models.generating.generating_vae`` and ``generating_hvae``.

        Args:
            *args: none are taken; given, they are refused with where those VAEs are built now.
            **kwargs: likewise.

        Returns:
            ``truth``.

        Raises:
            TypeError: any argument.
        """
        if args or kwargs:
            raise TypeError(
                "true_model() takes no arguments; the VAEs on the generating decoder are built by "
                "ibkit.models.generating: generating_vae(ds, posterior, hidden=..., seed=..., beta=...) for one "
                "latent layer, generating_hvae(ds, inference, seed=..., exact=...) for two"
            )
        return self.truth

    # the closed forms, asked of the chain

    def covariance(self) -> Tensor:
        """The covariance of x: [D, D] float32.

        Returns:
            [D, D] float32, Cov x.
        """
        return self.truth.covariance()

    def log_px(self, x: Tensor) -> Tensor:
        """log N(x; b, Cov x) per row: x [N, D] -> [N] float32 (computed in float64).

        Args:
            x: [N, D] rows.

        Returns:
            [N] float32, log p(x) of each row in nats.
        """
        return self.truth.log_px(x)

    def entropy(self) -> float:
        """h(X) = 1/2 log det(2 pi e Cov x) in nats.

        Returns:
            h(X) in nats.
        """
        return self.truth.entropy()

    def mutual_information(self) -> float:
        """I(X;Z) between x and the whole latent code, in nats (= I(X;Z1): the upper layers act through z1).

        Returns:
            I(X;Z) in nats.
        """
        return self.truth.mutual_information()

    def exact_posterior(self, x: Tensor) -> MultivariateNormal:
        """p(z|x) over the whole latent code: batch_shape [N], event_shape [sum of the latent widths].

        Args:
            x: [N, D] rows.

        Returns:
            the exact posterior, ``LinearGaussianChain.posterior``.
        """
        return self.truth.posterior(x)

    def layer_information(self) -> tuple[float, ...]:
        """(I(X;Z1), ..., I(X;ZL)) in nats; see ``LinearGaussianChain.layer_information``.

        Returns:
            one I(X;Z_l) per layer, nearest the data first, in nats.
        """
        return self.truth.layer_information()

    def conditional_information(self, layer: int = 1) -> float:
        """I(X;Z_l|Z_{l+1}) = I(X;Z_l) - I(X;Z_{l+1}) in nats (l = ``layer``, two layers or more).

        Args:
            layer: l in 1..L-1.

        Returns:
            I(X;Z_l|Z_{l+1}) in nats.
        """
        return self.truth.conditional_information(layer)

    def latent_information(self, layer: int = 1) -> float:
        """I(Z_l;Z_{l+1}) in nats (l = ``layer``, two layers or more); I(Z1;Z2) = 1/2 log det(A A^T + s1^2 I) -
        d1/2 log s1^2.

        Args:
            layer: l in 1..L-1.

        Returns:
            I(Z_l;Z_{l+1}) in nats.
        """
        return self.truth.latent_information(layer)

    def layer_posteriors(self, x: Tensor) -> TwoLayerPosteriors:
        """p(z2|x), p(z1|z2, x), p(z1|x), p(z2|z1) as diagonal Gaussians (two layers); see ``TwoLayerPosteriors``.

        Args:
            x: [N, D] rows.

        Returns:
            the factors, ``LinearGaussianChain.layer_posteriors``.
        """
        return self.truth.layer_posteriors(x)


GaussianSourceDataset = LinearGaussianDataset  # the names of the former base and two-layer classes
TwoLayerGaussianDataset = LinearGaussianDataset
