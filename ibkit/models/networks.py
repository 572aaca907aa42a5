"""The multilayer perceptron every encoder and decoder is made of."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """in_dim -> hidden[0] -> ... -> out_dim with ReLU between layers; ``hidden=()`` is one linear map.

    Maps [..., in_dim] to [..., out_dim] (any leading dimensions, e.g. [S, N, d] samples of z).
    """
    sizes = (in_dim, *hidden, out_dim)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
