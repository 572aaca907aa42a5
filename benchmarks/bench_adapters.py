"""``ibkit analyse`` of a Stable-Diffusion-sized VAE against the bare encode plus decode of the same images, in one run.

An ``AutoencoderKL`` with Stable Diffusion's shape (block_out_channels (128, 256, 512, 512), 4 latent channels, random
weights: the time does not depend on them) and --images 256x256 RGB images (crops of scikit-learn's two sample
photographs). Times, each the best of --repeats:

    bare       vae.encode(2x - 1).latent_dist.sample() then vae.decode(z).sample, the images at once
    analyse    ibkit.analyse(model, x, k=--k) through ibkit.adapters.diffusers.wrap(vae, likelihood=0.1): every number
               of the report (rate, distortion, ELBO, IWAE, the I(X;Z) bracket, channel rates, the rate map, PSNR, ...)
    iwae       E.iwae(model, x, k) alone: what analyse spends on its k importance samples

and the bare decode alone, and prints seconds per image, the ratio analyse / bare with the IWAE's k samples and
beyond them (analyse less k bare decodes; aim: <= 3x), and the peak resident memory after each phase (the process's,
so each includes the phases before it).

    python benchmarks/bench_adapters.py [--images 2] [--size 256] [--k 1] [--repeats 1]
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import torch

from ibkit import estimators as E
from ibkit.analysis import analyse


def photographs(n: int, size: int) -> torch.Tensor:
    """n crops [n, 3 size size] in [0, 1] of scikit-learn's sample photographs (china.jpg, flower.jpg)."""
    from sklearn.datasets import load_sample_images

    pictures = load_sample_images().images  # uint8 [427, 640, 3] each
    crops = []
    for i in range(n):
        picture = pictures[i % len(pictures)]
        top, left = (i // len(pictures)) * 37 % (picture.shape[0] - size), (i * 53) % (picture.shape[1] - size)
        crops.append(np.ascontiguousarray(picture[top: top + size, left: left + size].transpose(2, 0, 1)))
    return torch.as_tensor(np.stack(crops), dtype=torch.float32).flatten(1) / 255


def sd_sized_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    blocks = (128, 256, 512, 512)
    return AutoencoderKL(block_out_channels=blocks, down_block_types=("DownEncoderBlock2D",) * len(blocks),
                         up_block_types=("UpDecoderBlock2D",) * len(blocks), latent_channels=4, layers_per_block=2,
                         sample_size=512).eval()


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--k", type=int, default=1, help="importance samples of analyse's IWAE")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from ibkit.adapters import diffusers as adapter

    vae = sd_sized_vae()
    x = photographs(args.images, args.size)
    images = 2 * x.reshape(-1, 3, args.size, args.size) - 1

    def bare() -> torch.Tensor:
        with torch.no_grad():
            return vae.decode(vae.encode(images).latent_dist.sample()).sample

    with torch.no_grad():
        latent = vae.encode(images).latent_dist.sample()

    def decode() -> torch.Tensor:
        with torch.no_grad():
            return vae.decode(latent).sample

    model = adapter.wrap(vae, likelihood=0.1)
    bare_s = best_time(bare, args.repeats)
    decode_s = best_time(decode, args.repeats)
    bare_peak = peak_gib()
    iwae_s = best_time(lambda: E.iwae(model, x, args.k), args.repeats)
    analyse_s = best_time(lambda: analyse(model, x, k=args.k, iwae_rows=len(x), eval_rows=len(x)), args.repeats)
    analyse_peak = peak_gib()
    n = len(x)
    print(f"{n} images {args.size}x{args.size}, SD-sized AutoencoderKL (random weights), {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}")
    print(f"{'':<34}{'s per image':>12}{'peak GiB':>10}")
    print(f"{'bare encode + decode':<34}{bare_s / n:>12.2f}{bare_peak:>10.2f}")
    print(f"{'bare decode alone':<34}{decode_s / n:>12.2f}")
    print(f"{f'E.iwae, k = {args.k}':<34}{iwae_s / n:>12.2f}")
    print(f"{f'ibkit analyse, k = {args.k}':<34}{analyse_s / n:>12.2f}{analyse_peak:>10.2f}")
    print(f"analyse / bare = {analyse_s / bare_s:.2f}x with its k = {args.k} IWAE samples; beyond them (less k bare "
          f"decodes), {(analyse_s - args.k * decode_s) / bare_s:.2f}x (aim <= 3x). E.iwae alone repeats the encoder "
          "pass and the protocol check that analyse shares among its estimators.")


if __name__ == "__main__":
    main()
