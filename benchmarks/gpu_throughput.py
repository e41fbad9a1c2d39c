"""GPU throughput: training images/s and model FLOP utilization of the shared loop.

Rows on a CUDA machine:
  single trial   ResNet-18 (CIFAR stem: 3x3 stride-1, no max-pool) and VGG-16 C at
                 32 and 64 px, the shared loop with its GPU defaults (bf16 autocast,
                 channels_last, training split resident on the GPU) vs the same loop
                 with them switched off by config (precision fp32, channels_last
                 false, data_on_device false: fp32 NCHW batches copied from host).
  packing        1, 2, 4 small trials per GPU through the product's engine
                 (gpus_per_trial 1, 0.5, 0.25; Ray places them on one GPU): the
                 sum of the trials' training images/s.
On a machine without CUDA the script runs the CPU rows instead (fp32 single
trials on a small subset; packing 1 and 2 one-thread trials per machine) and
says which CUDA rows it skipped, so it stays runnable everywhere.

Images/s is the loop's own ``samples_per_second`` (training only, validation
excluded), median over the epochs after the first (warm-up, cuDNN autotuning).
FLOPs per training image are counted with torch.utils.flop_counter on one
forward + backward at the measured size; MFU divides achieved FLOP/s by the
GPU's dense bf16 tensor-core peak (fp32 rows too, so the columns compare).
The data is real: Fashion-MNIST resized to the row's size (one channel; the
RGB stem would add 0.4% to ResNet-18's 0.56 GMACs at 32 px).
Run: python benchmarks/gpu_throughput.py [--repeats 3] [--per-class N] [--epochs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a plain script

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import torch  # noqa: E402

MODELS = {
    "ResNet-18 (CIFAR stem)": {"trainable": "resnet18", "stem": "cifar"},
    "VGG-16 C (BN, fc 512)": {"trainable": "vgg16", "fc_width": 512, "batch_norm": True},
}
FAST = {"precision": "bf16", "channels_last": True, "data_on_device": True}
PLAIN = {"precision": "fp32", "channels_last": False, "data_on_device": False}
# the small trial that packing shares a GPU between
PACKED = {"trainable": "small_vgg", "blocks": 3, "width": 32, "batch_size": 128}
# dense bf16 tensor-core peaks (FLOP/s), by a fragment of torch.cuda.get_device_name()
PEAK_BF16 = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12),
             ("GH200", 989e12), ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12),
             ("A10", 125e12)]


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((p for frag, p in PEAK_BF16 if frag in name), None)


def flops_per_image(config: dict) -> float:
    """Forward + backward FLOPs of one training image (flop_counter counts 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    from hpsearch.trainables.loop import build_model, load_data

    data = load_data(config)
    model = build_model(config, data.info)
    x = data.train[0][:2]
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / len(x)


def packed(k: int, *, per_trial_gpu: float, epochs: int, data: dict, root: Path) -> float:
    """Total training images/s of k concurrent trials sharing the machine's GPU (or CPUs)."""
    from benchmarks.common import recording_tracker
    from hpsearch.results.storage import Storage
    from hpsearch.search.engine import Instruments, instrumented_search
    from hpsearch.search.spec import parse_spec

    rates: dict[str, list[float]] = {}

    def record(trial, result) -> None:
        rates.setdefault(trial.trial_id, []).append(result["samples_per_second"])

    spec = parse_spec({
        "name": f"pack-{k}", "trainable": PACKED["trainable"], "data": data,
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"algorithm": "random", "samples": k, "seed": 0, "concurrency": k},
        "scheduler": {"name": "fifo", "max_epochs": epochs},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": per_trial_gpu},
        "space": {"lr": {"loguniform": [0.01, 0.02]}},
        "fixed": {k2: v for k2, v in PACKED.items() if k2 != "trainable"},
    }, source="benchmark")
    instrumented_search(spec, Instruments(tracker_class=recording_tracker(record)),
                        storage=Storage(root), echo=lambda *_: None)
    if len(rates) != k:
        raise RuntimeError(f"expected {k} trials, got {len(rates)}")
    return sum(statistics.median(r[1:]) for r in rates.values())


def main() -> None:
    import ray

    from benchmarks.common import loop_throughput, spread, write_section

    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=5000 if cuda else 40,
                    help="Fashion-MNIST images per class (70%% train); default 5000 on GPU, 40 on CPU")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per measurement (first is warm-up)")
    ap.add_argument("--batch-size", type=int, default=512 if cuda else 64)
    args = ap.parse_args()
    peak = peak_flops()
    body = ["| model | px | variant | images/s | GFLOP per training image | MFU |",
            "|---|---|---|---|---|---|"]
    variants = {"bf16 + channels_last + data on GPU": FAST, "fp32, NCHW, data copied per batch":
                PLAIN} if cuda else {"fp32 (CPU)": {}}
    for label, model_cfg in MODELS.items():
        for px in (32, 64):
            data = {"source": "fashion-mnist", "per_class": args.per_class, "image_size": px}
            base = {**model_cfg, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "seed": 0,
                    "batch_size": args.batch_size, "cpus_per_trial": os.cpu_count(), "data": data}
            gflop = flops_per_image(base) / 1e9
            for vname, extra in variants.items():
                rates = []
                for r in range(args.repeats):
                    rates.append(loop_throughput({**base, **extra}, args.epochs))
                    print(f"{label} {px}px {vname} repeat {r + 1}: {rates[-1]:.0f} images/s",
                          flush=True)
                mfu = (spread([x * gflop * 1e9 / peak * 100 for x in rates], "{:.1f}") + " %"
                       if peak else "n/a (no known peak)")
                body.append(f"| {label} | {px} | {vname} | {spread(rates, '{:.0f}')} | "
                            f"{gflop:.2f} | {mfu} |")
    # packing: k trials on one GPU (fractional GPUs), or k one-thread trials on a CPU machine
    ks = (1, 2, 4) if cuda else (1, 2)
    ray.init(include_dashboard=False, log_to_driver=False)
    pack_rows, one = [], None
    data = {"source": "fashion-mnist", "per_class": args.per_class}
    for k in ks:
        totals = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                totals.append(packed(k, per_trial_gpu=1 / k if cuda else 0,
                                     epochs=args.epochs, data=data, root=Path(tmp)))
            print(f"packing {k}: {totals[-1]:.0f} images/s in all", flush=True)
        one = one or statistics.median(totals)
        pack_rows.append(f"| {k} | {spread(totals, '{:.0f}')} | "
                         f"{statistics.median(totals) / one:.2f} |")
    ray.shutdown()
    where = "per GPU (gpus_per_trial 1/k)" if cuda else "per machine (1 CPU thread each)"
    body += ["", f"Packing: small_vgg (3 blocks, width 32, batch {PACKED['batch_size']}) on "
             f"28 px Fashion-MNIST, k trials {where}, through `run_search`:", "",
             "| trials | total images/s | vs 1 trial |", "|---|---|---|", *pack_rows]
    n_train = int(args.per_class * 10 * 0.7)
    body.append(f"\n{n_train:,} training images, batch {args.batch_size}, SGD, {args.epochs} "
                "epochs per measurement (the first is warm-up). Targets (H100): the CIFAR "
                "ResNet-18 at 32 px >= 30,000 training images/s; 4 packed trials >= 2x one.")
    if not cuda:
        body.append("No CUDA device here: the bf16 / channels_last / GPU-resident rows, MFU "
                    "and 4-per-GPU packing were skipped; run this script on a GPU machine "
                    "for them.")
    name = "GPU throughput (benchmarks/gpu_throughput.py)" if cuda else \
        "GPU throughput, CPU rows (benchmarks/gpu_throughput.py)"
    write_section(name, "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
