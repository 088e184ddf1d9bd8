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
- ``CLIPFeaturizer.transform`` (cold caches) with as many decoding workers: threads,
  DataLoader worker processes (``worker_type="processes"``), and threads that decode the
  JPEG files on the GPU (``decode_device="cuda"``); and ``fit_transform`` with 7 intervened
  views per image, for each of the three;
- agreement of CPU (fp32) and GPU (auto precision, fp32, and fp32 with nvJPEG decoding)
  embeddings of the same images, and the GPU unit tests of the test suite.

Results are printed and, when ``$OUT`` is set, written to ``$OUT/gpu_featurizer.json`` and
``$OUT/gpu_featurizer.txt``.

    python benchmarks/gpu_featurizer.py [--n-images 4096] [--batch-size 256] [--workers 16]

``--smoke`` runs the same code in seconds on a machine without a GPU (a tiny random CLIP,
a few dozen images, the CPU; no GPU decoding), to check that the script runs.
"""

from __future__ import annotations

import argparse
import contextlib
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

from bench_featurizer_throughput import Files  # noqa: E402  (this script's folder)

from skcicm import CLIPFeaturizer  # noqa: E402
from skcicm.featurizer import load_clip, save_local_dir  # noqa: E402
from skcicm.featurizer._images import forget_file_keys  # noqa: E402
from skcicm.featurizer.cache import clear_memory_cache  # noqa: E402

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


#: --smoke: a tiny random CLIP (64 px input), so that the whole script runs in seconds on a CPU.
SMOKE_MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def low_precision(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bare_loop(model, preprocess, paths, batch_size, workers, device) -> float:
    loader = torch.utils.data.DataLoader(
        Files(paths, preprocess),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    outputs = []
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode(), low_precision(device):
        for batch in loader:
            outputs.append(model.encode_image(batch.to(device, non_blocking=True)).float())
    sync(device)
    elapsed = time.perf_counter() - start
    assert sum(len(o) for o in outputs) == len(paths)
    return elapsed


def compute_only(model, batch_size, size, device, repeats=10) -> float:
    batch = torch.randn(batch_size, 3, size, size, device=device)
    with torch.inference_mode(), low_precision(device):
        for _ in range(3):
            model.encode_image(batch)
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model.encode_image(batch)
        sync(device)
    return batch_size * repeats / (time.perf_counter() - start)


def flops_per_image(model, size, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.encode_image(torch.randn(1, 3, size, size, device=device))
    return counter.get_total_flops()


def timed_cold(featurizer: CLIPFeaturizer, method: str, paths: list[str]) -> float:
    clear_memory_cache()
    forget_file_keys()
    device = torch.device(featurizer.device)  # set explicitly by every caller here
    sync(device)
    start = time.perf_counter()
    getattr(featurizer, method)(paths)
    sync(device)
    return time.perf_counter() - start


def agreement(model_name: str, paths: list[str], batch_size: int, device) -> dict[str, float]:
    """Cosine of CPU fp32 embeddings with those of the device, per precision and decoder.

    On a CPU (``--smoke``) it compares worker processes with threads instead, which must
    agree bit for bit (cosine 1).
    """
    common = dict(
        pretrained=None, interventions=None, batch_size=batch_size, progress=False, cache_dir=None
    )
    cpu = CLIPFeaturizer(model_name, device="cpu", num_workers=4, **common).transform(paths)
    if device.type == "cuda":
        variants = {
            "auto": dict(precision="auto"),
            "fp32": dict(precision="fp32"),
            "fp32_nvjpeg": dict(precision="fp32", decode_device="cuda"),
        }
    else:
        variants = {"cpu_processes": dict(worker_type="processes", num_workers=2)}
    results = {}
    for name, params in variants.items():
        clear_memory_cache()
        params = {"device": str(device), **params}
        other = CLIPFeaturizer(model_name, **common, **params).transform(paths)
        cosine = (cpu * other).sum(axis=1)
        results[f"cosine_min_{name}"] = float(cosine.min())
        results[f"cosine_mean_{name}"] = float(cosine.mean())
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
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run in seconds on a CPU: tiny random CLIP, 48 images, 2 workers, no GPU parts",
    )
    args = parser.parse_args()
    if args.smoke:
        args.n_images, args.n_intervened, args.n_agreement = 48, 16, 16
        args.batch_size, args.workers, args.jpeg_size = 16, 2, 80
    elif not torch.cuda.is_available():
        sys.exit("gpu_featurizer.py needs a CUDA GPU (or --smoke, to check that it runs).")
    began = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    results: dict[str, object] = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (smoke)",
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "args": vars(args),
    }
    report(f"{results['device']}, torch {torch.__version__}, {args.workers} workers")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        torch.manual_seed(0)
        if args.smoke:
            config, size = SMOKE_MODEL_CFG, SMOKE_MODEL_CFG["vision_cfg"]["image_size"]
            random_model = open_clip.CLIP(**config)
        else:
            config, size = open_clip.get_model_config("ViT-B-16"), 224
            random_model = open_clip.create_model("ViT-B-16", pretrained=None)
        folder = save_local_dir(
            random_model,
            scratch / "random-clip",
            config,
            {"size": size},
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

        loaded = load_clip(model_name, None, str(device))
        flops = flops_per_image(loaded.model, size, device)
        nominal = flops / 1e9 if args.smoke else args.gflop_per_image
        bound = args.peak_tflops * 1e3 / nominal
        compute = compute_only(loaded.model, args.batch_size, size, device)
        bare_args = (loaded.model, loaded.preprocess, paths, args.batch_size, args.workers, device)
        bare_loop(*bare_args[:2], paths[: 2 * args.batch_size], *bare_args[3:])  # warm-up
        bare = len(paths) / bare_loop(*bare_args)
        variants = {
            "threads": dict(worker_type="threads"),
            "processes": dict(worker_type="processes"),
        }
        if device.type == "cuda":
            variants["threads, nvJPEG"] = dict(worker_type="threads", decode_device="cuda")
        common = dict(
            pretrained=None,
            device=str(device),
            batch_size=args.batch_size,
            num_workers=args.workers,
            progress=False,
            cache_dir=None,  # memory only: timed_cold empties it
        )
        rates, sources = {}, {}
        for label, params in variants.items():
            clean = CLIPFeaturizer(model_name, interventions=None, **common, **params)
            clean.transform(paths[: 2 * args.batch_size])  # model load and warm-up
            rates[label] = len(paths) / timed_cold(clean, "transform", paths)
            views = CLIPFeaturizer(model_name, n_interventions=7, **common, **params)
            intervened = paths[: args.n_intervened]
            sources[label] = len(intervened) / timed_cold(views, "fit_transform", intervened)
        results.update(
            gflop_per_image_counted=flops / 1e9,
            flop_bound_img_s=bound,
            compute_only_img_s=compute,
            bare_loop_img_s=bare,
            featurizer_img_s=rates,
            featurizer_over_bare={label: rate / bare for label, rate in rates.items()},
            intervened_source_img_s=sources,
        )
        report(
            f"FLOPs per image: {flops / 1e9:.2f} GFLOP counted; bound at "
            f"{args.peak_tflops:.0f} TFLOP/s and {nominal:.2f} GFLOP: {bound:.0f} img/s"
        )
        report(f"{'':38}{'img/s':>9}{'of bound':>10}{'/ bare':>8}")
        report(f"{'compute only':38}{compute:9.0f}{compute / bound:10.1%}")
        report(f"{'bare DataLoader loop':38}{bare:9.0f}{bare / bound:10.1%}{1:8.3f}")
        for label, rate in rates.items():
            name = f"transform ({label})"
            report(f"{name:38}{rate:9.0f}{rate / bound:10.1%}{rate / bare:8.3f}")
        for label, rate in sources.items():
            report(
                f"fit_transform, 7 views ({label}): {rate:.0f} source img/s "
                f"({8 * rate:.0f} encodings/s)"
            )

        results.update(agreement(model_name, paths[: args.n_agreement], args.batch_size, device))
        report(
            "agreement with CPU fp32 (cosine min / mean): "
            + "; ".join(
                f"{key.removeprefix('cosine_min_')} {value:.6f} / "
                f"{results['cosine_mean_' + key.removeprefix('cosine_min_')]:.6f}"
                for key, value in results.items()
                if key.startswith("cosine_min_")
            )
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
            "tests/test_decode_workers.py",
            "tests/test_gpu_decoding.py",
            "-k",
            "gpu",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    results["gpu_unit_test"] = test.stdout.strip().splitlines()[-1] if test.stdout else test.stderr
    report(f"GPU unit tests: {results['gpu_unit_test']}")
    results["wall_s"] = time.perf_counter() - began
    report(f"total {results['wall_s']:.0f} s")
    if os.environ.get("OUT"):
        out = Path(os.environ["OUT"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_featurizer.json").write_text(json.dumps(results, indent=2))
        (out / "gpu_featurizer.txt").write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
