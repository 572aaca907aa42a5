"""A sweep stores each run under the id of its spec: a model built otherwise fails loudly."""


def test_run_grid_refuses_a_built_model_that_is_not_its_spec():
    """A ``build`` hook that drops a knob (here beta) would store a run under the wrong name: it fails loudly."""
    import ibkit
    from ibkit.config import RunSpec, TrainingConfig
    from ibkit.sweep import run_grid

    ds = ibkit.data.load("digits")
    specs = [RunSpec("vae", dict(latent_dim=2, hidden=(8,), beta=0.5))]
    rows = run_grid("t", ds, specs, lambda m, s: {"test": {}}, TrainingConfig(epochs=1),
                    build=lambda spec: ibkit.build_model("vae", ds.input_dim, 2, hidden=(8,)))
    assert (rows["status"] == "failed").all()
    assert "the built model differs from its spec: beta=1.0 (spec: 0.5)" in rows["error"].iloc[0]
