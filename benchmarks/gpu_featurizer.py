"""CLIPFeaturizer on a GPU: images/s from JPEG files against a bare loop and the FLOP bound.

Runs end to end in a few minutes on one GPU machine, with nothing downloaded: ViT-B-16 with
random weights (``open_clip.create_model("ViT-B-16", pretrained=None)``, saved once in the
``local-dir:`` layout), on generated JPEG files (256 px, resized to 224 by the model's own
preprocessing). It reports, from the same run:

- compute only: ``encode_image`` on a batch already on the GPU, under bf16 autocast;
- the FLOP bound: FLOPs per image (counted by ``torch.utils.flop_counter``) against the
  device's peak dense bf16 rate (``--peak-tflops``, 989 for an H100/H200 SXM);
- a bare loop: ``torch.utils.data.DataLoader`` worker processes decode and preprocess,
  pinned memory, non-blocking copies, ``inference_mode`` and bf16 autocast;
- ``CLIPFeaturizer.transform`` (cold caches) with as many decoding threads, and
  ``fit_transform`` with 7 intervened views per image;
- agreement of CPU (fp32) and GPU (auto precision, and fp32) embeddings of the same images,
  and the GPU unit test of the test suite.

Results are printed and, when ``$OUT`` is set, written to ``$OUT/gpu_featurizer.json`` and
``$OUT/gpu_featurizer.txt``.

    python benchmarks/gpu_featurizer.py [--n-images 4096] [--batch-size 256] [--workers 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's skcicm, also when it is not installed

from skcicm import CLIPFeaturizer  # noqa: E402
from skcicm.embedding_cache import clear_memory_cache  # noqa: E402
from skcicm.images import forget_file_keys  # noqa: E402
from skcicm.models import load_clip, save_local_dir  # noqa: E402

LINES: list[str] = []


def report(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def write_jpeg(job: tuple[str, int, int]) -> None:
    path, seed, size = job
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))
    noisy = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path, quality=90)


class JPEGFiles(torch.utils.data.Dataset):
    def __init__(self, paths: list[str], preprocess) -> None:
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.preprocess(image.convert("RGB"))


def bare_loop(model, preprocess, paths, batch_size, workers, device) -> float:
    loader = torch.utils.data.DataLoader(
        JPEGFiles(paths, preprocess),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=True,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    outputs = []
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for batch in loader:
            outputs.append(model.encode_image(batch.to(device, non_blocking=True)).float())
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    assert sum(len(o) for o in outputs) == len(paths)
    return elapsed


def compute_only(model, batch_size, device, repeats=10) -> float:
    batch = torch.randn(batch_size, 3, 224, 224, device=device)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            model.encode_image(batch)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            model.encode_image(batch)
        torch.cuda.synchronize()
    return batch_size * repeats / (time.perf_counter() - start)


def flops_per_image(model, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.encode_image(torch.randn(1, 3, 224, 224, device=device))
    return counter.get_total_flops()


def timed_cold(featurizer: CLIPFeaturizer, method: str, paths: list[str]) -> float:
    clear_memory_cache()
    forget_file_keys()
    torch.cuda.synchronize()
    start = time.perf_counter()
    getattr(featurizer, method)(paths)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def agreement(model_name: str, paths: list[str], batch_size: int) -> dict[str, float]:
    common = dict(pretrained=None, interventions=None, batch_size=batch_size, progress=False)
    cpu = CLIPFeaturizer(model_name, device="cpu", num_workers=4, **common).transform(paths)
    results = {}
    for precision in ("auto", "fp32"):
        clear_memory_cache()
        gpu = CLIPFeaturizer(model_name, device="cuda", precision=precision, **common)
        cosine = (cpu * gpu.transform(paths)).sum(axis=1)
        results[f"cosine_min_{precision}"] = float(cosine.min())
        results[f"cosine_mean_{precision}"] = float(cosine.mean())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=4096)
    parser.add_argument("--n-intervened", type=int, default=512)
    parser.add_argument("--n-agreement", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--jpeg-size", type=int, default=256)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument(
        "--gflop-per-image",
        type=float,
        default=35.1,
        help="nominal FLOPs of ViT-B-16 at 224 px (2 x 17.6 GMACs), used for the bound; the "
        "counted figure is reported too (torch's counter may miss fused attention)",
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_featurizer.py needs a CUDA GPU.")
    began = time.perf_counter()
    device = torch.device("cuda")
    results: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "args": vars(args),
    }
    report(f"{results['gpu']}, torch {torch.__version__}, {args.workers} workers")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        torch.manual_seed(0)
        random_model = open_clip.create_model("ViT-B-16", pretrained=None)
        folder = save_local_dir(
            random_model,
            scratch / "vit-b-16-random",
            open_clip.get_model_config("ViT-B-16"),
            {"size": 224},
            dtype=torch.float16,  # half the file; open_clip loads it back as float32
        )
        del random_model
        model_name = f"local-dir:{folder}"
        jobs = [(str(scratch / f"{i:06d}.jpg"), i, args.jpeg_size) for i in range(args.n_images)]
        with Pool(args.workers) as pool:
            pool.map(write_jpeg, jobs, chunksize=64)
        paths = [path for path, _, _ in jobs]
        written = time.perf_counter() - began
        report(f"{len(paths)} JPEGs of {args.jpeg_size} px written ({written:.0f} s)")

        loaded = load_clip(model_name, None, "cuda")
        flops = flops_per_image(loaded.model, device)
        bound = args.peak_tflops * 1e3 / args.gflop_per_image
        compute = compute_only(loaded.model, args.batch_size, device)
        bare_loop(
            loaded.model,
            loaded.preprocess,
            paths[: 2 * args.batch_size],
            args.batch_size,
            args.workers,
            device,
        )  # worker start-up and cudnn warm-up
        bare = len(paths) / bare_loop(
            loaded.model, loaded.preprocess, paths, args.batch_size, args.workers, device
        )
        featurizer = CLIPFeaturizer(
            model_name,
            pretrained=None,
            interventions=None,
            device="cuda",
            batch_size=args.batch_size,
            num_workers=args.workers,
            progress=False,
        )
        featurizer.transform(paths[: 2 * args.batch_size])
        ours = len(paths) / timed_cold(featurizer, "transform", paths)
        views = CLIPFeaturizer(
            model_name,
            pretrained=None,
            n_interventions=7,
            device="cuda",
            batch_size=args.batch_size,
            num_workers=args.workers,
            progress=False,
        )
        intervened = paths[: args.n_intervened]
        sources = len(intervened) / timed_cold(views, "fit_transform", intervened)
        results.update(
            gflop_per_image_counted=flops / 1e9,
            flop_bound_img_s=bound,
            compute_only_img_s=compute,
            bare_loop_img_s=bare,
            featurizer_img_s=ours,
            featurizer_over_bare=ours / bare,
            intervened_source_img_s=sources,
        )
        report(
            f"FLOPs per image: {flops / 1e9:.1f} GFLOP; bound at {args.peak_tflops:.0f} "
            f"TFLOP/s: {bound:.0f} img/s"
        )
        report(f"{'':28}{'img/s':>9}{'of bound':>10}")
        for label, rate in [
            ("compute only (bf16)", compute),
            ("bare DataLoader loop", bare),
            ("CLIPFeaturizer.transform", ours),
        ]:
            report(f"{label:28}{rate:9.0f}{rate / bound:10.1%}")
        report(f"featurizer / bare loop: {ours / bare:.3f}")
        report(
            f"fit_transform, 7 views: {sources:.0f} source img/s ({8 * sources:.0f} encodings/s)"
        )

        results.update(agreement(model_name, paths[: args.n_agreement], args.batch_size))
        report(
            "CPU fp32 vs GPU cosine: auto precision min {cosine_min_auto:.5f} mean "
            "{cosine_mean_auto:.5f}; fp32 min {cosine_min_fp32:.6f}".format(**results)
        )
    test = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_featurizer.py",
            "tests/test_image_streaming.py",
            "-k",
            "gpu",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    results["gpu_unit_test"] = test.stdout.strip().splitlines()[-1] if test.stdout else test.stderr
    report(f"GPU unit test: {results['gpu_unit_test']}")
    results["wall_s"] = time.perf_counter() - began
    report(f"total {results['wall_s']:.0f} s")
    if os.environ.get("OUT"):
        out = Path(os.environ["OUT"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_featurizer.json").write_text(json.dumps(results, indent=2))
        (out / "gpu_featurizer.txt").write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
