"""Training-loop efficiency: samples/s of the shared loop vs a bare PyTorch loop.

Same model (built by the same builder, same init), same real data (Fashion-MNIST
resized to 32x32), same batch size, same torch threads, same optimizer. The
shared loop's ``samples_per_second`` is its training throughput (validation
excluded); the bare loop is forward, cross-entropy, zero_grad, backward, step.
The first epoch of each is a warm-up and is not counted.
Run: python benchmarks/loop_efficiency.py [--repeats 3] [--images 512] [--reviews 2000]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a plain script

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

MODELS = {
    "ResNet-18 (CIFAR stem), 32x32": {"trainable": "resnet18", "stem": "cifar"},
    "VGG-16 C (BN, fc 512), 32x32": {"trainable": "vgg16", "fc_width": 512, "batch_norm": True},
    # the sentiment baseline: Embedding 100 -> 3 LSTM layers of 128 -> Linear, packed sequences
    "3-layer LSTM, fine-foods token ids": {"trainable": "sentiment_lstm", "num_layers": 3,
                                          "hidden_size": 128, "embed_dim": 100, "text": True},
}


def bare_loop(config: dict, epochs: int) -> float:
    from trainables.loop import (
        build_model,
        init_weights,
        load_data,
        make_optimizer,
        seed_everything,
    )

    torch.set_num_threads(int(config["cpus_per_trial"]))
    seed_everything(0)
    data = load_data(config)  # the same inputs (token ids for the LSTM)
    model = build_model(config, data.info)
    init_weights(model, "kaiming")
    opt = make_optimizer(config, model.parameters())
    x, y = data.train
    bs, rates = config["batch_size"], []
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x))
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rates.append(len(x) / (time.perf_counter() - t0))
    return statistics.median(rates[1:])


def main() -> None:
    from benchmarks.common import loop_throughput, spread, write_section

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=512, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per measurement (first is warm-up)")
    ap.add_argument("--reviews", type=int, default=2000,
                    help="fine-foods reviews for the LSTM row (70%% train); its batches vary in "
                         "length, so it needs more of them than the image rows for a stable median")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    per_class = max(3, round(args.images / 0.7 / 10))
    body = ["| model | shared loop samples/s | bare loop samples/s | ratio (shared / bare) |",
            "|---|---|---|---|"]
    for label, model_cfg in MODELS.items():
        model_cfg = dict(model_cfg)
        data = ({"source": "fine-foods", "per_class": args.reviews // 2} if model_cfg.pop("text", False)
                else {"source": "fashion-mnist", "per_class": per_class, "image_size": 32})
        config = {**model_cfg, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 64,
                  "cpus_per_trial": args.threads, "seed": 0, "data": data}
        shared, bare, ratios = [], [], []
        for r in range(args.repeats):  # interleaved
            s, b = loop_throughput(config, args.epochs), bare_loop(config, args.epochs)
            shared.append(s)
            bare.append(b)
            ratios.append(s / b)
            print(f"{label} repeat {r + 1}: shared {s:.1f}/s, bare {b:.1f}/s, ratio {s / b:.3f}")
        body.append(f"| {label} | {spread(shared)} | {spread(bare)} | {spread(ratios)} |")
    body.append(f"\nBatch 64, SGD, {args.threads} torch threads, ~{int(per_class * 10 * 0.7)} "
                f"training images per epoch; the LSTM reads {args.reviews:,} fine-foods reviews "
                f"({int(args.reviews * 0.7):,} train, two classes), truncated at the 95th percentile "
                "length. Target: ratio >= 0.95.")
    write_section("Training-loop efficiency, CPU (benchmarks/loop_efficiency.py)", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
