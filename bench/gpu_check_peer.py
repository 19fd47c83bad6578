#!/usr/bin/env python3
"""The GPU check's peer (bench/gpu_check.sh, step 6): what a user would pick instead of Caffe,
measured on the same GPU in the same minute. torchvision's VGG16 with a 7-way head, batch 48 at
224 x 224, SGD with momentum 0.9 and the FER-2013 solver's learning rate and weight decay, trained
for the same iterations as `caffe train` in the check (warm-up, then the timed ones), with TF32 off
and then on (torch.backends' flags: cuDNN convolutions and cuBLAS matrix products).

Prints one line per setting, ``tf32 off|on IMAGES_PER_S PEAK_MIB``. Random images and labels, made
on the device: the throughput of the training step itself, as Caffe's prefetching Data layer
leaves it. PyTorch's defaults otherwise (cudnn.benchmark off: cuDNN's heuristics pick the
algorithms, as in Caffe's patched layer). No pycaffe_fer import: this runs in the GPU machine's
own Python, which has torch and torchvision.

    python bench/gpu_check_peer.py --device cuda:0 [--warmup 10 --timed 40]
"""
import argparse
import sys
import time

import torch
import torchvision

NUM_CLASSES = 7
# configs/fer2013.yaml's solver (base_lr, momentum, weight_decay)
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 0.0005


def set_tf32(allowed):
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(device, batch, size, warmup, timed):
    """Train a fresh VGG16 for warmup + timed iterations; images/s over the timed ones and the peak
    memory the process allocated on the device (MiB; 0 on the CPU)."""
    torch.manual_seed(0)
    model = torchvision.models.vgg16(num_classes=NUM_CLASSES).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    loss_of = torch.nn.CrossEntropyLoss()
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    for iteration in range(warmup + timed):
        if iteration == warmup:
            synchronize(device)
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_of(model(images), labels).backward()
        optimizer.step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else 0.0
    return timed * batch / elapsed, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0", help="torch device (cuda:N, or cpu for a dry run)")
    parser.add_argument("--warmup", type=int, default=10, help="iterations before the timed ones")
    parser.add_argument("--timed", type=int, default=40, help="timed iterations")
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--size", type=int, default=224, help="image height and width")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.timed < 1:
        parser.error("--warmup and --timed must be at least 1")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check_peer.py: --device %s: torch %s sees no CUDA device" % (args.device, torch.__version__))
    print("torch %s, torchvision %s, %s" % (torch.__version__, torchvision.__version__,
                                             torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"),
          flush=True)
    for allowed in (False, True):
        set_tf32(allowed)
        rate, peak = images_per_second(device, args.batch, args.size, args.warmup, args.timed)
        print("tf32 %s %.1f %.0f" % ("on" if allowed else "off", rate, peak), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
