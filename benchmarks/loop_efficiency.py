"""Training-loop efficiency: samples/s of the shared loop vs a bare PyTorch loop.

Same model (built by the same builder, same init), same real data (Fashion-MNIST
resized to 32x32), same batch size, same torch threads, same optimizer. The
shared loop's ``samples_per_second`` is its training throughput (validation
excluded); the bare loop is forward, cross-entropy, zero_grad, backward, step.
The first epoch of each is a warm-up and is not counted.

On a CUDA machine it measures the GPU section instead: 28 px Fashion-MNIST at
the batch sizes the shipped specs search, the shared loop with its defaults
(CUDA graphs, bf16, channels_last, resident data) and with CUDA graphs off, vs
a bare eager loop with the same bf16 / channels_last / resident data; the
fixed cost of a trial's first epoch in a reused worker, with cuDNN autotuning
off (the default) and on; and the graphed and eager loops' losses side by side.
Run: python benchmarks/loop_efficiency.py [--repeats 3] [--images 512] [--reviews 2000]
     (GPU: [--per-class 2000] [--epochs 4])
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
    from hpsearch.trainables.loop import (
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
    x, y = data.train
    cuda = torch.cuda.is_available()
    if cuda:  # the usual fast eager recipe: bf16 autocast, channels_last, data on the GPU
        model = model.cuda().to(memory_format=torch.channels_last)
        x, y = x.cuda().contiguous(memory_format=torch.channels_last), y.cuda()
    opt = make_optimizer(config, model.parameters())
    bs, rates = config["batch_size"], []
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x), device=x.device)
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                out = model(x[idx])
            loss = F.cross_entropy(out.float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()
        rates.append(len(x) / (time.perf_counter() - t0))
    return statistics.median(rates[1:])


GPU_ROWS = [("ResNet-18 (CIFAR stem)", {"trainable": "resnet18", "stem": "cifar"}, bs)
            for bs in (32, 64, 128, 256, 512)]
GPU_ROWS += [("VGG-16 C (BN, fc 512)", {"trainable": "vgg16", "fc_width": 512,
                                        "batch_norm": True}, bs) for bs in (64, 256)]


def gpu_main(args) -> None:
    """The GPU section: throughput rows, first-epoch tax, graphed vs eager losses."""
    from benchmarks.common import spread, write_section
    from hpsearch.trainables.loop import train

    data = {"source": "fashion-mnist", "per_class": args.per_class}
    base = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "seed": 0, "data": data,
            "cpus_per_trial": 1}

    def epochs_of(config: dict) -> list[dict]:
        rows: list[dict] = []
        train(config, lambda m, s: rows.append(m))
        return rows

    body = ["| model | batch | shared loop, CUDA graphs (default) | shared loop, eager | "
            "bare eager loop | graphs / bare | eager / bare |", "|---|---|---|---|---|---|---|"]
    for label, model_cfg, bs in GPU_ROWS:
        config = {**base, **model_cfg, "batch_size": bs, "max_epochs": args.epochs}
        graphed = [r["samples_per_second"] for r in epochs_of(config)[1:]]
        eager = [r["samples_per_second"] for r in epochs_of({**config, "cuda_graphs": False})[1:]]
        bare = bare_loop(config, args.epochs)
        g, e = statistics.median(graphed), statistics.median(eager)
        body.append(f"| {label} | {bs} | {spread(graphed, '{:.0f}')} | {spread(eager, '{:.0f}')} | "
                    f"{bare:.0f} | {g / bare:.2f} | {e / bare:.2f} |")
        print(body[-1], flush=True)
    # the fixed cost of a trial: its first epoch (+ setup) over its steady epochs, for a
    # sequence of trials in one process as a reused Tune worker runs them
    tax = ["", "First epoch of a trial in a reused worker, (setup + epoch 1) / median of "
           "epochs 2.., ResNet-18, one process running the trials in this order:", "",
           "| cuDNN autotuning | trial | batch | setup s | epoch 1 s | steady epoch s | ratio |",
           "|---|---|---|---|---|---|---|"]
    resnet = {**base, "trainable": "resnet18", "stem": "cifar", "max_epochs": 3}
    for bench, sizes in ((False, (64, 128, 64)), (True, (48, 96, 80))):
        for k, bs in enumerate(sizes, 1):
            rows = epochs_of({**resnet, "batch_size": bs, "lr": 0.02 * k,
                              "cudnn_benchmark": bench})
            first = rows[0]["epoch_seconds"] + rows[0]["setup_seconds"]
            steady = statistics.median(r["epoch_seconds"] for r in rows[1:])
            tax.append(f"| {'on' if bench else 'off (default)'} | {k} | {bs} | "
                       f"{rows[0]['setup_seconds']:.2f} | {rows[0]['epoch_seconds']:.2f} | "
                       f"{steady:.2f} | {first / steady:.2f} |")
            print(tax[-1], flush=True)
    # the same trial graphed and eager: CUDA graphs replay the same kernels
    check = {**resnet, "batch_size": 128, "max_epochs": 3}
    a, b = epochs_of(check), epochs_of({**check, "cuda_graphs": False})
    same = ["", "Same trial (ResNet-18, batch 128, seed 0), CUDA graphs vs eager, per epoch:", "",
            "| epoch | train_loss graphs | train_loss eager | val_accuracy graphs | "
            "val_accuracy eager |", "|---|---|---|---|---|"]
    same += [f"| {r['epoch']} | {r['train_loss']:.4f} | {q['train_loss']:.4f} | "
             f"{r['val_accuracy']:.4f} | {q['val_accuracy']:.4f} |" for r, q in zip(a, b)]
    n_train = int(args.per_class * 10 * 0.7)
    body += tax + same + [
        f"\n{n_train:,} training images of 28 px, SGD (momentum 0.9), {args.epochs} epochs per "
        "row, the first a warm-up: images/s are median (min-max) over the other epochs. "
        "Targets: ResNet-18 at batch 64 >= 15,000 images/s in the shared loop; shared / bare "
        ">= 0.95 at every row; a trial's first epoch <= 1.3x a steady one."]
    write_section("Training-loop efficiency, GPU (benchmarks/loop_efficiency.py)", "\n".join(body))
    print("\n".join(body))


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
    ap.add_argument("--per-class", type=int, default=2000,
                    help="GPU section: Fashion-MNIST images per class (70%% train)")
    args = ap.parse_args()
    if torch.cuda.is_available():
        args.epochs = max(args.epochs, 4)
        gpu_main(args)
        return
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
