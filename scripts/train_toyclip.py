"""Train ToyCLIP: a small open_clip CLIP trained contrastively on ToyWorld.

The model is trained on image-caption pairs from every ToyWorld domain except
the held-out ones, whose style words never appear in a training image or
caption. It is saved in open_clip's ``local-dir:`` layout
(``open_clip_config.json`` + ``open_clip_model.safetensors``), together with
``training_record.json``; unless ``--no-eval`` is given, the saved files are
then reloaded and evaluated by ``evaluate_toyclip.py``, which adds the metrics
to the record and writes ``TRAINING.md``.

Example (the command used for the shipped weights is in TRAINING.md)::

    python scripts/train_toyclip.py --steps 2500 --out skcicm/weights/toyclip
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from skcicm.datasets import TOYWORLD_CLASSES, TOYWORLD_DOMAINS, make_toyworld, toyworld_caption

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "skcicm" / "weights" / "toyclip"


def model_config(args: argparse.Namespace) -> dict:
    """open_clip ``model_cfg`` of the ToyCLIP architecture."""
    if args.vision_arch == "resnet":
        # open_clip's ModifiedResNet (a list of layers selects it). At 32 px it learned
        # shapes far faster than a ViT of the same cost (patch-8 ViTs from scratch are
        # data hungry): 82% vs 37% after 300 supervised steps in a side test.
        vision_cfg = {
            "image_size": args.image_size,
            "layers": [args.vision_layers] * 4,
            "width": args.vision_width,
        }
    else:
        vision_cfg = {
            "image_size": args.image_size,
            "patch_size": args.patch_size,
            "width": args.vision_width,
            "layers": args.vision_layers,
            "head_width": 32,
        }
    return {
        "embed_dim": args.embed_dim,
        "vision_cfg": vision_cfg,
        "text_cfg": {
            # Captions are at most ~10 tokens; a short context keeps the text tower cheap.
            "context_length": args.context_length,
            "vocab_size": 49408,
            "width": args.text_width,
            "heads": max(1, args.text_width // 16),
            "layers": args.text_layers,
        },
    }


def caption_variants(style: str, shape: str, color: str) -> tuple[str, str, str]:
    """Full caption, caption without colour, bare shape caption."""
    article = "an" if shape[0] in "aeiou" else "a"
    return (
        toyworld_caption(style, shape, color),
        toyworld_caption(style, shape),
        f"{article} {shape}",
    )


def multi_positive_clip_loss(img, txt, logit_scale, caption_ids):
    """Symmetric InfoNCE where every pair with an identical caption is a positive.

    With a few hundred distinct captions, a batch of 256 holds many duplicates;
    treating them as negatives (as plain CLIP loss does) would push apart
    images of the same shape and style.
    """
    logits = logit_scale * img @ txt.T
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def save_local_dir(model, model_cfg: dict, mean, std, out: Path) -> Path:
    """Write open_clip's local-dir layout; weights in fp16 to keep the file small."""
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "size": model_cfg["vision_cfg"]["image_size"],
            "mean": [round(float(m), 4) for m in mean],
            "std": [round(float(s), 4) for s in std],
            # Images are rendered at the model resolution, so resizing is a no-op
            # for ToyWorld; bicubic + shortest-side is the usual CLIP behaviour otherwise.
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous()
        for k, v in model.state_dict().items()
    }
    path = out / "open_clip_model.safetensors"
    save_file(state, str(path))
    return path


def check_reload(model, out: Path, images: torch.Tensor, tokens: torch.Tensor) -> float:
    """Max abs difference between in-memory and reloaded embeddings (fp16 storage)."""
    reloaded, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")
    reloaded.eval()
    model.eval()
    with torch.no_grad():
        a = torch.cat(
            [model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True)]
        )
        b = torch.cat(
            [
                reloaded.encode_image(images, normalize=True),
                reloaded.encode_text(tokens, normalize=True),
            ]
        )
    return float((a - b).abs().max())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output directory (open_clip local-dir layout); default: %(default)s",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data, init and batches")
    p.add_argument(
        "--held-out",
        nargs="+",
        default=["painting"],
        choices=TOYWORLD_DOMAINS,
        help="domains excluded from training images and captions",
    )
    p.add_argument(
        "--n-per-cell",
        type=int,
        default=1200,
        help="training images per (shape, domain) cell, rendered once",
    )
    p.add_argument("--steps", type=int, default=2500, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps before cosine")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument(
        "--vision-arch",
        choices=["resnet", "vit"],
        default="resnet",
        help="image tower: open_clip ModifiedResNet or ViT",
    )
    p.add_argument(
        "--vision-width",
        type=int,
        default=16,
        help="ResNet base width (features = 32 x width) or ViT width",
    )
    p.add_argument(
        "--vision-layers",
        type=int,
        default=1,
        help="ResNet blocks per stage (4 stages) or ViT layers",
    )
    p.add_argument("--patch-size", type=int, default=8, help="ViT patch size")
    p.add_argument("--text-width", type=int, default=64)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--context-length", type=int, default=16)
    p.add_argument("--embed-dim", type=int, default=128)
    # On a shared 2-core machine one thread is the robust choice: with a second busy
    # process, two threads spin-wait on each other and a step took 4.5 s instead of 0.6 s.
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument(
        "--no-eval",
        action="store_true",
        help="skip the evaluation of the saved model (no metrics, no TRAINING.md)",
    )
    p.add_argument(
        "--eval-n-per-cell",
        type=int,
        default=200,
        help="evaluation images per cell (half fit the probes, half test)",
    )
    args = p.parse_args(argv)
    if len(set(args.held_out)) >= len(TOYWORLD_DOMAINS) - 1:
        p.error("keep at least two training domains")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    command = shlex.join(
        ["python", "scripts/train_toyclip.py", *(sys.argv[1:] if argv is None else argv)]
    )
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_domains = [d for d in TOYWORLD_DOMAINS if d not in args.held_out]

    t0 = time.perf_counter()
    world = make_toyworld(
        args.n_per_cell, domains=train_domains, image_size=args.image_size, random_state=rng
    )
    images = torch.from_numpy(world.images).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    mean = images.float().mean(dim=(0, 2, 3)) / 255.0
    std = images.float().std(dim=(0, 2, 3)) / 255.0
    print(f"rendered {len(images)} training images in {time.perf_counter() - t0:.0f}s", flush=True)

    tokenizer = open_clip.SimpleTokenizer(context_length=args.context_length)
    vocab = sorted(
        {
            c
            for s, sh, col in zip(
                world.factors["style"], world.factors["shape"], world.factors["color"], strict=True
            )
            for c in caption_variants(s, sh, col)
        }
    )
    caption_index = {c: i for i, c in enumerate(vocab)}
    vocab_tokens = tokenizer(vocab)

    model_cfg = model_config(args)
    model = open_clip.CLIP(**model_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        frac = (step - args.warmup) / max(1, args.steps - args.warmup)
        return 0.5 * args.lr * (1 + math.cos(math.pi * frac))

    mean_t, std_t = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)
    print(
        f"{n_params / 1e6:.2f}M parameters; {len(vocab)} distinct captions; "
        f"train domains {train_domains}, held out {args.held_out}",
        flush=True,
    )
    t_train = time.perf_counter()
    model.train()
    order = rng.permutation(len(images))
    pos, running = 0, []
    for step in range(args.steps):
        if pos + args.batch_size > len(order):
            order, pos = rng.permutation(len(images)), 0
        idx = order[pos : pos + args.batch_size]
        pos += args.batch_size
        # Half of the captions drop the colour word: otherwise colour alone solves the
        # contrastive task and dominates what a small model learns.
        f = world.factors
        caps = [
            caption_variants(f["style"][i], f["shape"][i], f["color"][i])[k]
            for i, k in zip(idx, rng.choice(3, size=len(idx), p=[0.5, 0.25, 0.25]), strict=True)
        ]
        ids = torch.tensor([caption_index[c] for c in caps])
        x = (images[idx].float() / 255.0 - mean_t) / std_t
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        img_f, txt_f, scale = model(x, vocab_tokens[ids])
        loss = multi_positive_clip_loss(img_f, txt_f, scale, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        running.append(loss.item())
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            elapsed = time.perf_counter() - t_train
            eta = elapsed / (step + 1) * (args.steps - step - 1)
            print(
                f"step {step + 1}/{args.steps} loss {np.mean(running):.4f} "
                f"scale {scale.item():.1f} lr {lr_at(step):.2e} "
                f"elapsed {elapsed / 60:.1f}m eta {eta / 60:.1f}m",
                flush=True,
            )
            final_loss, running = float(np.mean(running)), []
    train_seconds = time.perf_counter() - t_train

    weights = save_local_dir(model, model_cfg, mean.tolist(), std.tolist(), args.out)
    probe = (images[:64].float() / 255.0 - mean_t) / std_t
    diff = check_reload(model, args.out, probe, vocab_tokens[:64])
    print(
        f"saved {weights} ({weights.stat().st_size / 2**20:.1f} MiB); "
        f"reload max |diff| of unit embeddings {diff:.2e}",
        flush=True,
    )

    record = {
        "command": command,
        "seed": args.seed,
        "train_domains": train_domains,
        "held_out_domains": list(args.held_out),
        "classes": list(TOYWORLD_CLASSES),
        "n_train_images": len(images),
        "n_parameters": n_params,
        "train_wall_clock_seconds": round(train_seconds, 1),
        "total_wall_clock_seconds": round(time.perf_counter() - t0, 1),
        "cpu_threads": args.threads,
        "final_train_loss": round(final_loss, 4),
        "caption_mix": {
            "a {style} of a {color} {shape}": 0.5,
            "a {style} of a {shape}": 0.25,
            "a {shape}": 0.25,
        },
        "hyperparameters": {
            k: v
            for k, v in vars(args).items()
            if k not in ("out", "no_eval", "log_every", "threads")
        },
        "model_cfg": model_cfg,
        "weights_file": weights.name,
        "weights_bytes": weights.stat().st_size,
        "weights_dtype": "float16",
        "versions": {
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
            "numpy": np.__version__,
        },
    }
    (args.out / "training_record.json").write_text(json.dumps(record, indent=2) + "\n")
    if not args.no_eval:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from evaluate_toyclip import main as evaluate

        evaluate(
            [
                "--model-dir",
                str(args.out),
                "--n-per-cell",
                str(args.eval_n_per_cell),
                "--threads",
                str(args.threads),
                "--write-report",
            ]
        )
    return record


if __name__ == "__main__":
    main()
