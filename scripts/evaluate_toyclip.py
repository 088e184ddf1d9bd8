"""Evaluate a saved ToyCLIP on fresh ToyWorld images of every domain.

The model is reloaded from its files through open_clip's ``local-dir:``
schema, so the numbers describe exactly what is shipped. For each domain
(training and held-out) it reports:

* zero-shot accuracy with the prompt ``"a {domain} of a {shape}"`` and with
  ``"a photo of a {shape}"``;
* same-domain linear-probe accuracy (logistic regression fitted on half of the
  domain's images, tested on the other half);
* pooled-probe accuracy: one probe fitted on the training domains only, tested
  on every domain (held-out domains are never seen by it).

With ``--write-report`` the metrics are added to ``training_record.json`` and
``TRAINING.md`` is (re)written from the record.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from skcicm import CLIPFeaturizer
from skcicm.datasets import TOYWORLD_DOMAINS, make_toyworld

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "skcicm" / "weights" / "toyclip"
PROMPTS = {
    "zero_shot_domain_prompt": "a {domain} of a {shape}",
    "zero_shot_photo_prompt": "a photo of a {shape}",
}


def zero_shot(
    featurizer: CLIPFeaturizer,
    feats: np.ndarray,
    template: str,
    domain: str,
    class_names: list[str],
) -> np.ndarray:
    """Predicted class indices by cosine similarity to the prompts of ``template``."""
    prompts = [template.format(domain=domain, shape=c) for c in class_names]
    return (feats @ featurizer.encode_text(prompts).T).argmax(axis=1)


def probe(train_x, train_y, test_x) -> np.ndarray:
    clf = LogisticRegression(C=10.0, max_iter=3000)
    return clf.fit(train_x, train_y).predict(test_x)


def evaluate(model_dir: Path, n_per_cell: int, seed: int, train_domains: list[str]) -> dict:
    # Unit-norm embeddings through the shipped preprocessing, as the library computes them.
    featurizer = CLIPFeaturizer(
        f"local-dir:{model_dir}", None, device="cpu", batch_size=500, progress=False
    )
    world = make_toyworld(n_per_cell, random_state=seed)
    feats = featurizer.transform(world.images)
    # Samples are ordered by (domain, class, instance): the first half of each cell
    # fits the probes, the second half tests everything.
    fit = (np.arange(len(world.labels)) % n_per_cell) < n_per_cell // 2
    in_train = np.isin(world.domains, train_domains)
    pooled = probe(feats[fit & in_train], world.labels[fit & in_train], feats)
    metrics = {}
    for domain in world.domain_names:
        dom = world.domains == domain
        test, y = dom & ~fit, world.labels[dom & ~fit]
        row = {"held_out": domain not in train_domains}
        for key, template in PROMPTS.items():
            pred = zero_shot(featurizer, feats[test], template, domain, world.class_names)
            row[key] = float(np.mean(pred == y))
        pred = probe(feats[dom & fit], world.labels[dom & fit], feats[test])
        row["linear_probe_same_domain"] = float(np.mean(pred == y))
        row["linear_probe_pooled_train_domains"] = float(np.mean(pooled[test] == y))
        metrics[domain] = row
    return metrics


def describe_architecture(model_cfg: dict) -> str:
    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    if "patch_size" in vision:
        tower = (
            f"ViT ({vision['layers']} layers, width {vision['width']}, "
            f"patch {vision['patch_size']})"
        )
    else:
        tower = (
            f"open_clip ModifiedResNet (blocks per stage {vision['layers']}, "
            f"base width {vision['width']})"
        )
    return (
        f"{tower} at {vision['image_size']} px; text transformer ({text['layers']} layers, "
        f"width {text['width']}, context {text['context_length']}); "
        f"joint embedding {model_cfg['embed_dim']}"
    )


def render_markdown(record: dict) -> str:
    ev = record["evaluation"]
    lines = [
        "# ToyCLIP training record",
        "",
        "A small open_clip CLIP trained from "
        "scratch on ToyWorld image-caption pairs (`skcicm.datasets.make_toyworld`). "
        'Load it with `open_clip.create_model_and_transforms("local-dir:skcicm/weights/toyclip")`'
        ' and `open_clip.get_tokenizer("local-dir:skcicm/weights/toyclip")`.',
        "",
        "## How it was trained",
        "",
        "```",
        record["command"],
        "```",
        "",
        f"- architecture: {describe_architecture(record['model_cfg'])}",
        f"- seed: {record['seed']}",
        f"- training domains: {', '.join(record['train_domains'])}",
        f"- held-out domains (absent from training images **and** captions): "
        f"{', '.join(record['held_out_domains'])}",
        f"- classes: {', '.join(record['classes'])}",
        f"- training images: {record['n_train_images']} (rendered once), "
        f"{record['hyperparameters']['steps']} steps of batch "
        f"{record['hyperparameters']['batch_size']}, AdamW lr "
        f"{record['hyperparameters']['lr']} (warm-up + cosine)",
        "- captions: "
        + ", ".join(f"`{k}` ({v:.0%})" for k, v in record["caption_mix"].items())
        + "; loss: symmetric InfoNCE with identical captions in a batch counted as positives",
        f"- parameters: {record['n_parameters']:,}; weights stored as "
        f"{record['weights_dtype']} ({record['weights_bytes'] / 2**20:.1f} MiB)",
        f"- wall-clock training time: {record['train_wall_clock_seconds'] / 60:.1f} min "
        f"({record['total_wall_clock_seconds'] / 60:.1f} min including data rendering) on "
        f"{record['cpu_threads']} CPU thread(s) of a shared 2-core machine",
        f"- final training loss: {record['final_train_loss']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in record['versions'].items())}",
        "",
        "## Metrics",
        "",
        f"Evaluated by `{ev['command']}` on fresh ToyWorld images (seed {ev['seed']}, "
        f"{ev['n_per_cell']} images per (shape, domain) cell: half fit the probes, half test; "
        f"chance = {1 / len(record['classes']):.0%}). Zero-shot prompts: "
        + "; ".join(f"`{t}`" for t in PROMPTS.values())
        + ". Pooled probe: one logistic regression fitted on the training domains only.",
        "",
        "| domain | held out | zero-shot `a {domain} of a {shape}` | zero-shot "
        "`a photo of a {shape}` | linear probe (same domain) | pooled probe (train domains) |",
        "|---|---|---|---|---|---|",
    ]
    for domain, m in record["metrics"].items():
        lines.append(
            f"| {domain} | {'yes' if m['held_out'] else 'no'} "
            f"| {m['zero_shot_domain_prompt']:.1%} | {m['zero_shot_photo_prompt']:.1%} "
            f"| {m['linear_probe_same_domain']:.1%} "
            f"| {m['linear_probe_pooled_train_domains']:.1%} |"
        )
    if record.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in record["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_DIR,
        help="open_clip local-dir folder; default: %(default)s",
    )
    p.add_argument(
        "--n-per-cell", type=int, default=200, help="evaluation images per (shape, domain) cell"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=12345,
        help="seed of the evaluation world (distinct from training seeds)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--write-report",
        action="store_true",
        help="add the metrics to training_record.json and write TRAINING.md",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    record_path = args.model_dir / "training_record.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    train_domains = record.get("train_domains", list(TOYWORLD_DOMAINS))
    t0 = time.perf_counter()
    metrics = evaluate(args.model_dir, args.n_per_cell, args.seed, train_domains)
    print(f"evaluated in {time.perf_counter() - t0:.0f}s")
    print(
        f"{'domain':<10}{'held out':>9}{'zs domain':>11}{'zs photo':>10}{'probe':>8}{'pooled':>8}"
    )
    for domain, m in metrics.items():
        print(
            f"{domain:<10}{str(m['held_out']):>9}{m['zero_shot_domain_prompt']:>11.1%}"
            f"{m['zero_shot_photo_prompt']:>10.1%}{m['linear_probe_same_domain']:>8.1%}"
            f"{m['linear_probe_pooled_train_domains']:>8.1%}"
        )
    if args.write_report:
        if not record:
            raise SystemExit(f"--write-report needs {record_path} (written by train_toyclip.py)")
        record["metrics"] = metrics
        record["evaluation"] = {
            "command": "python scripts/evaluate_toyclip.py "
            f"--n-per-cell {args.n_per_cell} --seed {args.seed}",
            "seed": args.seed,
            "n_per_cell": args.n_per_cell,
            "prompts": PROMPTS,
        }
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        (args.model_dir / "TRAINING.md").write_text(render_markdown(record))
    return metrics


if __name__ == "__main__":
    main()
