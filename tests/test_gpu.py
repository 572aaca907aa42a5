"""On a CUDA device: training (``fit``, ``fit_many``), conv networks and the estimators' network calls (rate, IWAE,
the information bounds, bits-back coding) run there and agree with the same model on the CPU. Opt in with
``pytest -m gpu``; skipped with the reason where no CUDA device is present (CI never has one)."""

import copy

import pytest
import torch

import ibkit
from ibkit import estimators as E

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device (pytest -m gpu runs these where one is)")]


@pytest.fixture(scope="module")
def cuda_vae(digits):
    """A digits VAE trained two epochs on the GPU, and its copy on the CPU."""
    m = ibkit.build_model("vae", 64, 4, hidden=(64,), seed=0)
    history = ibkit.fit(m, digits.train, epochs=2, seed=0, progress=False, device="cuda")
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    return m, copy.deepcopy(m).cpu()


def test_fit_trains_on_the_gpu_and_the_estimators_agree_with_the_cpu(cuda_vae, digits):
    gpu, cpu = cuda_vae
    x = digits.test
    assert next(gpu.parameters()).is_cuda
    assert E.rate(gpu, x) == pytest.approx(E.rate(cpu, x), rel=1e-4)  # closed form: float32 rounding only
    assert E.distortion(gpu, x, n_samples=50) == pytest.approx(E.distortion(cpu, x, n_samples=50), rel=2e-2)
    assert E.iwae(gpu, x, 200) == pytest.approx(E.iwae(cpu, x, 200), abs=0.1)  # Monte Carlo, another generator
    on_gpu, on_cpu = E.mi_bounds(gpu, x), E.mi_bounds(cpu, x)
    assert on_gpu["infonce"] == pytest.approx(on_cpu["infonce"], abs=0.15)
    assert on_gpu["infonce"] <= on_gpu["log_n"] + 1e-6


def test_fit_many_trains_a_batch_on_the_gpu(digits):
    models = [ibkit.build_model("vae", 64, 4, hidden=(32,), beta=beta, seed=0) for beta in (0.5, 1.0, 2.0)]
    histories = ibkit.fit_many(models, digits.train, epochs=2, seed=[0, 1, 2], progress=False, device="cuda")
    assert all(next(m.parameters()).is_cuda for m in models)
    rates = [E.rate(m, digits.test) for m in models]
    assert all(h["loss"].iloc[-1] < h["loss"].iloc[0] for h in histories)
    assert rates[0] > rates[2]  # a heavier KL weight, a smaller rate


def test_a_conv_network_gives_the_cpus_numbers_on_the_gpu(digits):
    m = ibkit.build_model("vae", 64, 4, hidden=(32,), network="conv", channels=(8, 16), seed=0)
    x = digits.test[:64]
    eps = torch.randn(1, len(x), 4)
    on_cpu = m(x, eps).loss
    on_gpu = m.cuda()(x.cuda(), eps.cuda()).loss.cpu()
    assert torch.allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-3)


def test_bits_back_round_trips_with_a_model_on_the_gpu(cuda_vae, digits):
    pytest.importorskip("constriction", reason="constriction is not installed (pip install -e '.[coding]')")
    from ibkit.coding import bits_back

    gpu, cpu = cuda_vae
    x = digits.test[:40]
    code = bits_back(gpu, x, seed=0)
    assert code.nats_per_example == pytest.approx(bits_back(cpu, x, seed=0).nats_per_example, rel=2e-2)
