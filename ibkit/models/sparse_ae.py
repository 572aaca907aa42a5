"""The sparse autoencoder: an L1 penalty on the deterministic code."""

from torch import Tensor

from ibkit.models.base import Autoencoder


class SparseAE(Autoencoder):
    """loss = -log p(x|z) + sparsity * ||z||_1 (Ng 2011, "Sparse autoencoder"; the L1 form)."""

    KNOB = "sparsity"

    def regularizer(self, z: Tensor, rate: Tensor) -> Tensor:
        return self.sparsity * z.abs().sum(-1)
