"""A model kind of a user's own, in the user's own file: docs/extending.md's "A model kind" example, verbatim."""

from dataclasses import dataclass, field

import ibkit
from ibkit.models import VAE, VAEConfig


@dataclass(frozen=True)
class TemperedVAEConfig(VAEConfig):
    temperature: float = field(default=1.0, metadata={"knob": True})


@ibkit.register_model("tempered_vae")
class TemperedVAE(VAE):
    Config = TemperedVAEConfig

    def regularizer(self, z, rate):
        return self.beta / self.temperature * rate
