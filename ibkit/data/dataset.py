"""The record every loader in ``ibkit.data`` returns: a train/test pair of flattened inputs, with labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ibkit.checks import check_choice
from ibkit.registry import LIKELIHOODS


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair of flattened inputs, with labels where the source has them.

    Equality is identity (``eq=False``): comparing tensors element-wise has no single truth value.

    Attributes:
        name: the registry name it was loaded under ("digits", "mnist", "gaussian").
        train: [N_train, D] float32.
        test: [N_test, D] float32.
        likelihood: "bernoulli" (binary pixels) or "gaussian" (real values); the decoder to use.
        train_labels: [N_train] int64, or None.
        test_labels: [N_test] int64, or None.
        provenance: where the rows came from, for a run's manifest: ``split`` (e.g. "t10k split 8,000/2,000
            (test_fraction 0.2, seed 0)"), and for files read from disk the ``folder``, its ``origin`` (path,
            IBKIT_DATA or cache) and the ``files`` with their SHA-256.
        image_shape: (C, H, W) of one row where the loader knows it for this load (an image folder, whose size
            is an option), else None (the registry's ``image_shape`` holds a fixed one).

    Raises:
        ValueError: a likelihood that is not registered, splits that are not float32 [N, D] of one width, or labels
            that are not int64 [N] (one per row).
    """

    name: str
    train: Tensor
    test: Tensor
    likelihood: str
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    provenance: dict = field(default_factory=dict)
    image_shape: tuple[int, int, int] | None = None

    def __post_init__(self):
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        for split in ("train", "test"):
            x = getattr(self, split)
            if not isinstance(x, Tensor) or x.dim() != 2 or x.dtype != torch.float32:
                got = f"{type(x).__name__} {list(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"Dataset.{split} must be a float32 tensor [N, D]; got {got}")
            y = getattr(self, f"{split}_labels")
            if y is not None and (not isinstance(y, Tensor) or y.shape != (x.shape[0],) or y.dtype != torch.int64):
                got = f"{list(y.shape)} {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
                raise ValueError(
                    f"Dataset.{split}_labels must be an int64 tensor [{x.shape[0]}] (one per {split} row); got {got}"
                )
        if self.train.shape[1] != self.test.shape[1]:
            raise ValueError(
                f"Dataset.train has width {self.train.shape[1]} but Dataset.test has width {self.test.shape[1]}; "
                "both splits must have the same input_dim"
            )

    @property
    def split(self) -> str:
        """How the rows were split into train and test, in words (the sizes when the loader says no more)."""
        return str(self.provenance.get("split", f"{len(self.train):,}/{len(self.test):,}"))

    @property
    def input_dim(self) -> int:
        """D, the width of one flattened input."""
        return int(self.train.shape[1])

    def __repr__(self) -> str:
        labels = "labelled" if self.train_labels is not None else "unlabelled"
        return (
            f"{type(self).__name__}(name={self.name!r}, train={list(self.train.shape)}, "
            f"test={list(self.test.shape)}, likelihood={self.likelihood!r}, {labels})"
        )
