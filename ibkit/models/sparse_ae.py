"""The sparse autoencoder: an L1 penalty on the deterministic code."""

from dataclasses import dataclass, field

from torch import Tensor

from ibkit.models.base import Autoencoder
from ibkit.models.config import ModelConfig
from ibkit.registry import register_model


@dataclass(frozen=True)
class SparseAEConfig(ModelConfig):
    """The shared fields (``ModelConfig``) and the L1 weight.

    Args:
        sparsity: weight of the L1 penalty on the code, >= 0 (a knob).
    """

    sparsity: float = field(default=0.0, metadata={"knob": True, "id": "l1", "symbol": "λ", "low": 0,
                                                   "help": "weight of the L1 penalty on the code"})  # L1 weight


@register_model("sparse_ae", label="sparse AE", marker="^", colour=3)
class SparseAE(Autoencoder):
    """loss = -log p(x|z) + sparsity * ||z||_1 (Ng 2011, "Sparse autoencoder"; the L1 form).

    Args:
        config: a ``SparseAEConfig`` (``build`` and ``ibkit.build_model`` make it from keyword fields).
    """

    Config = SparseAEConfig
    sparsity: Tensor  # the knob's buffer: [] alone, [K, 1] in fit_many's stacked model

    def regularizer(self, z: Tensor, rate: Tensor) -> Tensor:
        """The L1 penalty sparsity * ||z||_1.

        Args:
            z: [N, d] the code.
            rate: [N] the rate (unused: a deterministic code has none).

        Returns:
            [N] the penalty.
        """
        return self.sparsity * z.abs().sum(-1)
