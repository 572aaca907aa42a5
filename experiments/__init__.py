"""The experiments ibkit ships, one package each (``ibkit.interface.Experiment`` says what each defines: NAME,
SUMMARY, a ``Config`` on ``ibkit.config.ExperimentConfig`` declaring only its grid, ``QUICK``, ``run`` and ``plot``;
an optional ``GROWS`` names the Config's grid lists that a finished folder may gain values in).

They are registered in pyproject.toml under the ``ibkit.experiments`` entry-point group; ``ibkit.registry.experiment``
loads one by name, as the command line does.
"""
