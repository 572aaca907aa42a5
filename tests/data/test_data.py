"""Tests for ibkit.data: digits, MNIST IDX reading and download, the linear-Gaussian source."""

from __future__ import annotations

import gzip
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import MultivariateNormal

from ibkit import data
from ibkit.data import mnist  # owns the download settings (MIRROR, MIRRORS, MNIST_MD5), read at call time
from ibkit.interface import LatentVariableModel
from ibkit.models.generating import generating_vae

SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
README_MD5 = {  # md5 of the uncompressed bytes, from shared/data/mnist/README.md
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


# ----------------------------------------------------------------------------------------------
# helpers: tiny IDX files


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array (magic 0x0000 08 ndim unless given)."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write(path: Path, raw: bytes, gz: bool) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def tiny_mnist(folder: Path, n_train: int = 5, n_test: int = 4, gz: bool = True, seed: int = 0) -> dict:
    """Write a tiny four-file MNIST into ``folder``; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for role, stem in data.MNIST_FILES.items():
        write(folder / stem, idx_bytes(arrays[role]), gz)
    return arrays


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No IBKIT_DATA, the cache under tmp_path, and every mirror pointing at an empty local folder."""
    monkeypatch.delenv("IBKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    nowhere = (tmp_path / "no-mirror").as_uri() + "/"
    monkeypatch.setattr(mnist, "MIRROR", nowhere)
    monkeypatch.setattr(mnist, "MIRRORS", (nowhere,))
    return tmp_path


# ----------------------------------------------------------------------------------------------
# digits


def sklearn_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data / 16.0, bunch.target


def test_digits_shapes_values_labels_alignment():
    ds = data.load()  # the default
    assert ds.name == "digits" and ds.likelihood == "bernoulli" and ds.input_dim == 64
    assert ds.train.shape == (1438, 64) and ds.test.shape == (359, 64)  # round(1797 * 0.2) = 359
    assert ds.train.dtype == ds.test.dtype == torch.float32
    assert set(torch.cat([ds.train, ds.test]).unique().tolist()) == {0.0, 1.0}
    assert ds.train_labels.dtype == torch.int64 and ds.train_labels.shape == (1438,)

    x, y = sklearn_digits()
    train_idx, test_idx = data.split_indices(1797, 0.2, 0)
    assert sorted(np.concatenate([train_idx, test_idx]).tolist()) == list(range(1797))
    np.testing.assert_array_equal(ds.train.numpy(), (x[train_idx] > 0.5).astype(np.float32))
    np.testing.assert_array_equal(ds.test.numpy(), (x[test_idx] > 0.5).astype(np.float32))
    np.testing.assert_array_equal(ds.train_labels.numpy(), y[train_idx])
    np.testing.assert_array_equal(ds.test_labels.numpy(), y[test_idx])


def test_digits_read_from_the_shipped_file_or_through_sklearn_are_the_same(monkeypatch):
    from ibkit.data import digits

    pixels, labels = digits.read_digits()  # straight from scikit-learn's digits.csv.gz
    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)
    fallback = digits.read_digits()  # through sklearn.datasets.load_digits
    np.testing.assert_array_equal(pixels, fallback[0])
    np.testing.assert_array_equal(labels, fallback[1])
    assert pixels.shape == (1797, 64) and pixels.max() == 16 and np.bincount(labels).min() == 174


def test_digits_split_is_deterministic_and_seeded():
    a, b, c = data.load("digits"), data.load("digits"), data.load("digits", seed=1)
    assert torch.equal(a.train, b.train) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_labels, c.train_labels)
    assert data.load("digits", test_fraction=0.5).test.shape[0] == round(1797 * 0.5)


def unshuffle(ds, seed: int, n: int) -> np.ndarray:
    train_idx, test_idx = data.split_indices(n, 0.2, seed)
    full = np.empty((n, ds.input_dim), dtype=np.float32)
    full[train_idx], full[test_idx] = ds.train.numpy(), ds.test.numpy()
    return full


def test_digits_stochastic_binarisation():
    x, _ = sklearn_digits()
    s0 = unshuffle(data.load("digits", binarize="stochastic", seed=0), 0, 1797)
    s0_again = unshuffle(data.load("digits", binarize="stochastic", seed=0), 0, 1797)
    s1 = unshuffle(data.load("digits", binarize="stochastic", seed=1), 1, 1797)
    assert set(np.unique(s0)) == {0.0, 1.0}
    np.testing.assert_array_equal(s0, s0_again)
    assert (s0 != s1).mean() > 0.05
    assert np.all(s0[x == 0] == 0) and np.all(s0[x == 1] == 1)  # Bernoulli(0) and Bernoulli(1) are fixed
    # E[sample] = pixel: over the 115,008 pixels the mean error is ~0 (sd of the mean < 0.002)
    assert abs((s0 - x).mean()) < 0.01


def test_digits_grey_levels():
    ds = data.load("digits", binarize="none")
    assert ds.likelihood == "gaussian"
    x, _ = sklearn_digits()
    np.testing.assert_allclose(unshuffle(ds, 0, 1797), x, atol=1e-7)
    assert ds.train.min() == 0 and ds.train.max() == 1 and len(ds.train.unique()) == 17


# ----------------------------------------------------------------------------------------------
# IDX parsing


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_parse_idx_round_trip(shape, seed):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(data.parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize("gz", [True, False])
def test_tiny_mnist_loads_exactly(tmp_path, no_env, gz):
    arrays = tiny_mnist(tmp_path / "files", gz=gz)
    ds = data.load("mnist", path=tmp_path / "files", binarize="none")
    assert ds.name == "mnist" and ds.input_dim == 784 and ds.likelihood == "gaussian"
    np.testing.assert_array_equal((ds.train.numpy() * 255).round(), arrays["train_images"].reshape(5, 784))
    np.testing.assert_array_equal((ds.test.numpy() * 255).round(), arrays["test_images"].reshape(4, 784))
    np.testing.assert_array_equal(ds.train_labels.numpy(), arrays["train_labels"])
    np.testing.assert_array_equal(ds.test_labels.numpy(), arrays["test_labels"])
    assert ds.train_labels.dtype == torch.int64
    binary = data.load("mnist", path=tmp_path / "files")
    np.testing.assert_array_equal(binary.train.numpy(), (arrays["train_images"].reshape(5, 784) > 127.5))


def test_ibkit_data_env_accepts_folder_or_parent(tmp_path, no_env, monkeypatch):
    arrays = tiny_mnist(tmp_path / "root" / "mnist")
    for folder in (tmp_path / "root", tmp_path / "root" / "mnist"):
        monkeypatch.setenv("IBKIT_DATA", str(folder))
        ds = data.load("mnist")
        np.testing.assert_array_equal(ds.test_labels.numpy(), arrays["test_labels"])


def test_only_t10k_pair_is_split(tmp_path, no_env):
    arrays = tiny_mnist(tmp_path, n_test=10)
    for stem in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / stem).unlink()
    ds = data.load("mnist", path=tmp_path, binarize="none", test_fraction=0.3, seed=2)
    train_idx, test_idx = data.split_indices(10, 0.3, 2)
    assert ds.train.shape == (7, 784) and ds.test.shape == (3, 784)
    np.testing.assert_array_equal(ds.test_labels.numpy(), arrays["test_labels"][test_idx])
    np.testing.assert_array_equal((ds.train.numpy() * 255).round(), arrays["test_images"].reshape(10, 784)[train_idx])


def test_truncated_file(tmp_path, no_env):
    tiny_mnist(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    expected = 16 + 4 * 784
    match = rf"t10k-images-idx3-ubyte.*expected {expected} bytes, got {expected - 10} bytes"
    with pytest.raises(ValueError, match=match):
        data.load("mnist", path=tmp_path)


def test_truncated_gzip_stream(tmp_path, no_env):
    tiny_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: not a readable gzip file"):
        data.load("mnist", path=tmp_path)


def test_wrong_magic_number(tmp_path, no_env):
    tiny_mnist(tmp_path)
    labels = np.zeros(4, dtype=np.uint8)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(labels), gz=True)  # a labels file in the images slot
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: magic number 0x00000801, expected 0x00000803"):
        data.load("mnist", path=tmp_path)


def test_images_labels_count_mismatch(tmp_path, no_env):
    tiny_mnist(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(6, dtype=np.uint8)), gz=True)
    match = r"train-images-idx3-ubyte.gz holds 5 images but .*train-labels-idx1-ubyte.gz holds 6 labels"
    with pytest.raises(ValueError, match=match):
        data.load("mnist", path=tmp_path)


def test_half_a_pair_is_named(tmp_path, no_env):
    tiny_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="not its partner train-labels-idx1-ubyte"):
        data.load("mnist", path=tmp_path)


# ----------------------------------------------------------------------------------------------
# the real MNIST test set shipped in shared/


@pytest.fixture(scope="module")
def shared_mnist():
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the shared MNIST test set is not at {SHARED_MNIST} (only in the project workspace)")
    return data.load("mnist", path=SHARED_MNIST, binarize="none")


def test_shared_mnist_shapes_and_labels(shared_mnist):
    ds = shared_mnist
    assert ds.train.shape == (8000, 784) and ds.test.shape == (2000, 784) and ds.input_dim == 784
    labels = torch.cat([ds.train_labels, ds.test_labels])
    assert labels.min() == 0 and labels.max() == 9 and len(labels.unique()) == 10
    assert ds.train.min() >= 0 and ds.train.max() <= 1


def test_shared_mnist_bytes_match_readme_md5(shared_mnist):
    """Undo the split and the /255 scaling, re-encode as IDX: the md5 must be the README's."""
    ds = shared_mnist
    train_idx, test_idx = data.split_indices(10_000, 0.2, 0)
    images = np.empty((10_000, 784), dtype=np.float32)
    images[train_idx], images[test_idx] = ds.train.numpy(), ds.test.numpy()
    images = (images * 255).round().astype(np.uint8).reshape(10_000, 28, 28)
    labels = np.empty(10_000, dtype=np.uint8)
    labels[train_idx], labels[test_idx] = ds.train_labels.numpy(), ds.test_labels.numpy()
    assert hashlib.md5(idx_bytes(images)).hexdigest() == README_MD5["t10k-images-idx3-ubyte"]
    assert hashlib.md5(idx_bytes(labels)).hexdigest() == README_MD5["t10k-labels-idx1-ubyte"]


def test_shared_mnist_provenance_names_the_folder_files_and_split(shared_mnist):
    """What a run's manifest records about its data: the folder and how it was found, each file read with its
    SHA-256, and the split actually used."""
    p = shared_mnist.provenance
    assert p["folder"] == str(SHARED_MNIST) and p["origin"] == "path" and p["binarize"] == "none"
    assert set(p["files"]) == {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    for name, digest in p["files"].items():
        assert digest == hashlib.sha256((SHARED_MNIST / name).read_bytes()).hexdigest()
    assert shared_mnist.split == "t10k split 8,000/2,000 (test_fraction 0.2, seed 0)"


def test_a_canonical_mnist_split_says_so(tmp_path):
    tiny_mnist(tmp_path)
    ds = data.load("mnist", path=tmp_path)
    assert ds.split == "train 5 / t10k 4 (the canonical split)" and len(ds.provenance["files"]) == 4


def test_shared_mnist_threshold_binarisation(shared_mnist):
    ds = data.load("mnist", path=SHARED_MNIST)
    assert ds.likelihood == "bernoulli"
    np.testing.assert_array_equal(ds.test.numpy(), (shared_mnist.test.numpy() > 0.5).astype(np.float32))


# ----------------------------------------------------------------------------------------------
# download into the cache


@pytest.fixture
def mirror(tmp_path, monkeypatch, no_env):
    """A file:// mirror holding a tiny four-file MNIST, with MNIST_MD5 set to its checksums."""
    arrays = tiny_mnist(tmp_path / "mirror")
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (tmp_path / "mirror").iterdir()}
    url = (tmp_path / "mirror").as_uri() + "/"
    monkeypatch.setattr(mnist, "MIRROR", url)
    monkeypatch.setattr(mnist, "MIRRORS", (url,))
    monkeypatch.setattr(mnist, "MNIST_MD5", md5)
    return arrays


def test_download_lands_in_cache_and_loads(mirror, tmp_path):
    ds = data.load("mnist", binarize="none")
    cache = tmp_path / "cache" / "ibkit" / "mnist"
    assert data.cache_dir() == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(s + ".gz" for s in data.MNIST_FILES.values())
    np.testing.assert_array_equal((ds.train.numpy() * 255).round(), mirror["train_images"].reshape(5, 784))
    np.testing.assert_array_equal(ds.test_labels.numpy(), mirror["test_labels"])
    again = data.load("mnist", binarize="none", download=False)  # now read from the cache
    assert torch.equal(again.train, ds.train)


def test_download_checksum_mismatch_deletes_file(mirror, tmp_path, monkeypatch):
    first = data.MNIST_FILES["train_images"] + ".gz"  # downloaded first, so nothing else is fetched
    got = mnist.MNIST_MD5[first]
    monkeypatch.setitem(mnist.MNIST_MD5, first, "0" * 32)
    with pytest.raises(ValueError, match=rf"{first}.*expected md5 0{{32}}, got {got}"):
        data.load("mnist")
    assert list((tmp_path / "cache" / "ibkit" / "mnist").iterdir()) == []  # no file, no temp file


def test_download_failure_says_where_to_put_files(no_env, tmp_path, monkeypatch):
    gone = (tmp_path / "no-such-mirror").as_uri() + "/"  # an unreachable mirror, without touching the network
    monkeypatch.setattr(mnist, "MIRROR", gone)
    monkeypatch.setattr(mnist, "MIRRORS", (gone,))
    with pytest.raises(ConnectionError, match=r"could not download .*path=FOLDER.*IBKIT_DATA"):
        data.load("mnist")
    assert list((tmp_path / "cache" / "ibkit" / "mnist").iterdir()) == []


def test_no_download_with_download_false(no_env, tmp_path):
    cache = str(tmp_path / "cache" / "ibkit" / "mnist")
    with pytest.raises(FileNotFoundError, match=rf"no MNIST IDX files in {cache} and download=False"):
        data.load("mnist", download=False)


def test_never_downloads_into_user_path(mirror, tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no MNIST IDX files in .*mine.*IBKIT_DATA"):
        data.load("mnist", path=tmp_path / "mine")
    assert list((tmp_path / "mine").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="path='.*missing' is not a folder"):
        data.load("mnist", path=tmp_path / "missing")


# ----------------------------------------------------------------------------------------------
# gaussian


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST: MNIST's format and file names, its own checksums, mirrors and folder


def test_fashion_mnist_reads_its_own_subfolder_beside_mnist_files(tmp_path, no_env, monkeypatch):
    """IBKIT_DATA holds MNIST's files and a fashion-mnist/ folder with files of the same names: each loader reads
    its own, Fashion-MNIST grey by default."""
    tiny_mnist(tmp_path / "data", seed=0)
    clothes = tiny_mnist(tmp_path / "data" / "fashion-mnist", seed=1)
    monkeypatch.setenv("IBKIT_DATA", str(tmp_path / "data"))
    ds = data.load("fashion_mnist")
    assert ds.name == "fashion_mnist" and ds.likelihood == "gaussian" and ds.input_dim == 784
    np.testing.assert_array_equal((ds.test.numpy() * 255).round(), clothes["test_images"].reshape(4, 784))
    np.testing.assert_array_equal(ds.train_labels.numpy(), clothes["train_labels"])
    assert ds.provenance["folder"] == str(tmp_path / "data" / "fashion-mnist")
    assert data.load("mnist").provenance["folder"] == str(tmp_path / "data")  # MNIST: the folder's own files


def test_fashion_mnist_downloads_into_its_cache_against_its_own_checksums(tmp_path, no_env, monkeypatch):
    tiny_mnist(tmp_path / "mirror", seed=2)
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in (tmp_path / "mirror").iterdir()}
    monkeypatch.setattr(mnist, "FASHION_MNIST_MIRRORS", ((tmp_path / "mirror").as_uri() + "/",))
    monkeypatch.setattr(mnist, "FASHION_MNIST_MD5", {**md5, "train-images-idx3-ubyte.gz": "0" * 32})
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*expected md5 0{32}"):
        data.load("fashion_mnist")
    monkeypatch.setattr(mnist, "FASHION_MNIST_MD5", md5)
    ds = data.load("fashion_mnist")
    assert data.cache_dir("fashion_mnist") == tmp_path / "cache" / "ibkit" / "fashion-mnist"
    assert len(list(data.cache_dir("fashion_mnist").iterdir())) == 4 and len(ds.train) == 5
    assert data.FASHION_MNIST_MD5["t10k-images-idx3-ubyte.gz"] == "bef4ecab320f06d8554ea6380940ec79"  # Zalando's


@pytest.fixture(scope="module")
def gauss():
    return data.load("gaussian", input_dim=8, latent_dim=2, noise=0.5, n_train=5000, n_test=5000, seed=0)


def test_gaussian_record(gauss):
    assert isinstance(gauss, data.LinearGaussianDataset) and isinstance(gauss, data.Dataset)
    assert gauss.likelihood == "gaussian" and gauss.train_labels is None and gauss.input_dim == 8
    assert gauss.train.shape == gauss.test.shape == (5000, 8) and gauss.train.dtype == torch.float32
    assert gauss.W.shape == (8, 2) and gauss.b.shape == (8,) and gauss.noise == 0.5
    again = data.load("gaussian")  # the defaults are these options
    assert torch.equal(again.train, gauss.train) and torch.equal(again.W, gauss.W)
    assert not torch.equal(data.load("gaussian", seed=1).W, gauss.W)


def test_gaussian_covariance_and_mean_match_samples(gauss):
    C = gauss.covariance().double()
    torch.testing.assert_close(C, gauss.W.double() @ gauss.W.double().T + 0.25 * torch.eye(8))
    x = gauss.train.double()
    n = x.shape[0]
    S = torch.cov(x.T)
    # Var of a sample covariance entry of a Gaussian = (C_ii C_jj + C_ij^2) / n; allow 5 standard errors
    se = ((torch.outer(C.diagonal(), C.diagonal()) + C**2) / n).sqrt()
    assert ((S - C).abs() <= 5 * se).all()
    assert ((x.mean(0) - gauss.b.double()).abs() <= 5 * (C.diagonal() / n).sqrt()).all()


def test_log_px_is_the_marginal_density(gauss):
    x = gauss.test[:500]
    reference = MultivariateNormal(gauss.b.double(), gauss.covariance().double()).log_prob(x.double())
    got = gauss.log_px(x)
    assert got.dtype == torch.float32 and got.shape == (500,)
    torch.testing.assert_close(got.double(), reference, rtol=1e-6, atol=1e-5)


def test_entropy_is_minus_mean_log_px(gauss):
    """-log p(x) = const + chi^2_D / 2 has variance D / 2, so the mean over n = 10,000 rows has
    standard error sqrt(D / 2 / n) = 0.02 for D = 8; 4 standard errors is 0.08 nats."""
    x = torch.cat([gauss.train, gauss.test])
    estimate = -gauss.log_px(x).double().mean().item()
    assert abs(estimate - gauss.entropy()) < 4 * math.sqrt(8 / 2 / len(x))
    C = gauss.covariance().double()
    closed_form = 0.5 * torch.logdet(2 * math.pi * math.e * C).item()
    assert gauss.entropy() == pytest.approx(closed_form, rel=1e-6)  # C here was rounded to float32


def test_exact_posterior_satisfies_bayes_rule(gauss):
    """log p(z) + log p(x|z) - log p(z|x) = log p(x) for every z: exact, so float32 round-off only."""
    x = gauss.test[:64]
    model = gauss.true_model()
    assert isinstance(model, LatentVariableModel)
    q = gauss.exact_posterior(x)
    assert q.batch_shape == (64,) and q.event_shape == (2,) and q.loc.dtype == torch.float32
    z = torch.randn(3, 64, 2, generator=torch.Generator().manual_seed(0)) * 1.5
    log_joint = model.prior().log_prob(z) + model.log_likelihood(x, z)
    assert log_joint.shape == (3, 64) and log_joint.dtype == torch.float32
    torch.testing.assert_close(log_joint - q.log_prob(z), gauss.log_px(x).expand(3, -1), rtol=0, atol=1e-3)
    assert model.prior().event_shape == (2,)


def test_log_likelihood_is_isotropic_gaussian(gauss):
    model = gauss.true_model()
    x, z = gauss.test[:10], torch.randn(4, 10, 2, generator=torch.Generator().manual_seed(1))
    reference = torch.distributions.Normal(z @ gauss.W.T + gauss.b, 0.5).log_prob(x).sum(-1)
    torch.testing.assert_close(model.log_likelihood(x, z), reference)
    with pytest.raises(ValueError, match=r"z must have shape \[S, N, k\] = \[S, 10, 2\]"):
        model.log_likelihood(x, torch.zeros(4, 9, 2))


@pytest.mark.parametrize("posterior", ["diagonal", "full"])
def test_true_model_vae_holds_the_generating_model_frozen(gauss, posterior):
    """The VAE form of the true model: its decoder and likelihood are the generating ones and frozen; only the
    encoder trains. Its log p(x|z) is then the generating model's."""
    exact, vae = gauss.true_model(), generating_vae(gauss, posterior, hidden=(8,), seed=1)
    x, z = gauss.test[:10], torch.randn(4, 10, 2, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(vae.log_likelihood(x, z), exact.log_likelihood(x, z), rtol=1e-5, atol=1e-4)
    assert all(not p.requires_grad for part in (vae.decoder, vae.likelihood) for p in part.parameters())
    assert all(p.requires_grad for p in vae.encoder.parameters())


def test_mutual_information_is_entropy_minus_noise_entropy(gauss):
    h_noise = 8 / 2 * math.log(2 * math.pi * math.e * 0.25)  # h(X|Z) = h(sigma eps)
    assert gauss.mutual_information() == pytest.approx(gauss.entropy() - h_noise, rel=1e-9)
    assert gauss.mutual_information() > 0


def test_eigenvalues_option():
    lam = (5.0, 2.0, 0.5, 0.5, 0.5)
    ds = data.load("gaussian", eigenvalues=lam, latent_dim=2, n_train=10, n_test=10, seed=3)
    assert ds.input_dim == 5 and ds.noise == pytest.approx(math.sqrt(0.5)) and torch.all(ds.b == 0)
    eig = torch.linalg.eigvalsh(ds.covariance().double()).flip(0)
    torch.testing.assert_close(eig, torch.tensor(lam, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    # I(X;Z) = 1/2 sum_i log(l_i / sigma^2) over the k signal directions
    assert ds.mutual_information() == pytest.approx(0.5 * (math.log(10) + math.log(4)), rel=1e-5)
    with pytest.raises(ValueError, match=r"eigenvalues=.*noise floor.*pass latent_dim=3"):
        data.load("gaussian", eigenvalues=(5.0, 2.0, 1.0, 0.5, 0.5), latent_dim=2)
    with pytest.raises(ValueError, match=r"input_dim=4 but 5 eigenvalues"):
        data.load("gaussian", eigenvalues=lam, input_dim=4)
    with pytest.raises(ValueError, match=r"noise=0.3 but eigenvalues fix sigma"):
        data.load("gaussian", eigenvalues=lam, noise=0.3)
    with pytest.raises(ValueError, match="eigenvalues=.*> 0"):
        data.load("gaussian", eigenvalues=(1.0, -1.0))


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("cifar", {}, r"name='cifar' is not known; choose one of: digits, mnist, fashion_mnist, gaussian, images, "
                      r"cifar10"),
        ("digits", {"binarise": "threshold"}, r"unknown option 'binarise'.*binarize, test_fraction, seed"),
        ("gaussian", {"sigma": 0.1}, r"unknown option 'sigma'.*noise"),
        ("digits", {"binarize": "otsu"}, r"binarize='otsu' is not known; choose one of: threshold, stochastic, none"),
        ("mnist", {"binarize": True}, r"binarize=True is not known"),
        ("digits", {"test_fraction": 0.0}, r"test_fraction=0.0 must be > 0"),
        ("digits", {"test_fraction": 1.0}, r"test_fraction=1.0 must be < 1"),
        ("mnist", {"test_fraction": 1.5}, r"test_fraction=1.5 must be <= 1"),
        ("digits", {"test_fraction": 1e-6}, r"test_fraction=1e-06 leaves 0 of 1797 rows"),
        ("digits", {"seed": -1}, r"seed=-1 must be >= 0"),
        ("gaussian", {"noise": -0.5}, r"noise=-0.5 must be > 0"),
        ("gaussian", {"noise": 0}, r"noise=0 must be > 0"),
        ("gaussian", {"latent_dim": 0}, r"latent_dim=0 must be >= 1"),
        ("gaussian", {"n_train": 2.5}, r"n_train=2.5 must be an integer"),
        ("mnist", {"download": "yes"}, r"download='yes' must be True or False"),
    ],
)
def test_bad_input(name, options, match):
    with pytest.raises(ValueError, match=match):
        data.load(name, **options)


def test_options_lists_defaults():
    assert data.options("digits") == {"binarize": "threshold", "test_fraction": 0.2, "seed": 0}
    assert set(data.options("gaussian")) == {
        "input_dim", "latent_dim", "noise", "n_train", "n_test", "seed", "eigenvalues", "latent_dims", "layer_noise"
    }


def test_dataset_validates_its_fields():
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="likelihood='poisson' is not known"):
        data.Dataset("d", x, x, "poisson")
    with pytest.raises(ValueError, match=r"Dataset.test has width 5"):
        data.Dataset("d", x, torch.zeros(3, 5), "gaussian")
    with pytest.raises(ValueError, match=r"Dataset.train_labels must be an int64 tensor \[3\]"):
        data.Dataset("d", x, x, "gaussian", train_labels=torch.zeros(2, dtype=torch.int64))



def test_every_name_of_the_former_single_module_is_importable():
    """ibkit.data was one module; each name it offered is still importable from the package."""
    names = [
        "BINARIZE", "DATASETS", "DOWNLOAD_TIMEOUT", "Dataset", "IDX_DTYPES", "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC",
        "LIKELIHOODS", "LinearGaussianDataset", "LinearGaussianModel", "MIRROR", "MIRRORS", "MNIST_FILES",
        "MNIST_MD5", "cache_dir", "load", "load_digits", "load_gaussian", "load_mnist", "options", "parse_idx",
        "read_idx", "split_indices",
    ]
    assert [n for n in names if not hasattr(data, n)] == []
    assert set(data.__all__) <= set(names) | {"load_images", "IMAGE_SUFFIXES", "load_cifar10", "read_cifar10_batch",
                                              "CIFAR10_TRAIN", "CIFAR10_TEST", "load_fashion_mnist",
                                              "FASHION_MNIST_MD5"}  # and the loaders added since
    assert list(data.DATASETS) == ["digits", "mnist", "fashion_mnist", "gaussian", "images", "cifar10"]
