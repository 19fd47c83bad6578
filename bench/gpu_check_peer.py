#!/usr/bin/env python3
"""The GPU check's peer (bench/gpu_check.sh, step 6): what a user would pick instead of Caffe,
measured on the same GPU in the same minute. VGG16 with a 7-way head, batch 48 at 224 x 224, SGD
with momentum 0.9 and the FER-2013 solver's learning rate and weight decay, trained for the same
iterations as `caffe train` in the check (warm-up, then the timed ones).

VGG16 is torchvision's where torchvision imports, else the same net built here from torch alone
(PyPI's torchvision fails to import beside some torch builds: "operator torchvision::nms does not
exist"): the same modules in the same order, the same parameter names and the same initialisation,
so a seed gives both the same weights (tests/test_gpu_check_peer.py checks they give the same
outputs).

TF32 as in Caffe's runs: "off" is off for cuDNN's convolutions and for the matrix products (the
check also sets NVIDIA_TF32_OVERRIDE=0 for it, as for Caffe's); "on" lets cuDNN's convolutions use
TF32 and keeps the matrix products in fp32, as Caffe's InnerProduct layers on cuBLAS's default math.

Prints one line first naming torch, the VGG16 used, the batch and the device, then one per setting,
``tf32 off|on IMAGES_PER_S PEAK_MIB``, PEAK_MIB being PyTorch's allocator's peak on a GPU and ``-``
on the CPU (the check reads peak memory with nvidia-smi for Caffe and for this alike). Random images
and labels, made on the device once and reused every iteration: the training step's own speed (Caffe
reads its LMDB through a prefetch thread instead). PyTorch's defaults otherwise (cudnn.benchmark
off: cuDNN's heuristics pick the algorithms, as in Caffe's patched layer). A failure ends in one
line on stderr, ``gpu_check_peer.py: ...``, and status 1. No pycaffe_fer import: this runs in the
GPU machine's own Python, which has torch.

    python bench/gpu_check_peer.py --device cuda:0 [--warmup 10 --timed 40] [--tf32 off]
"""
import argparse
import sys
import time

import torch
from torch import nn

NUM_CLASSES = 7
# configs/fer2013.yaml's solver (base_lr, momentum, weight_decay)
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 0.0005
# VGG16's convolutions (torchvision's configuration "D"): output channels, "M" a 2 x 2 max pooling.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """torchvision.models.vgg16(num_classes=...) from torch alone: the same modules, names and
    initialisation (torchvision's VGG.__init__, in its order), so the state dicts are interchangeable."""

    def __init__(self, num_classes=NUM_CLASSES, dropout=0.5):
        super().__init__()
        layers, channels = [], 3
        for width in VGG16_LAYERS:
            if width == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.constant_(module.bias, 0)

    def forward(self, images):
        return self.classifier(torch.flatten(self.avgpool(self.features(images)), 1))


def vgg16_builder(which="auto"):
    """(name, constructor taking num_classes): torchvision's VGG16, or the inline one where
    torchvision cannot be imported (which="auto") or is not wanted (which="inline")."""
    if which != "inline":
        try:
            import torchvision
            return "torchvision %s" % torchvision.__version__, torchvision.models.vgg16
        except Exception as error:   # missing, or a build that does not match this torch
            if which == "torchvision":
                raise SystemExit("gpu_check_peer.py: --vgg torchvision: torchvision cannot be imported (%s)"
                                 % (str(error).splitlines() or [type(error).__name__])[0])
            return "inline (torchvision: %s)" % (str(error).splitlines() or [type(error).__name__])[0][:80], VGG16
    return "inline", VGG16


def set_tf32(allowed):
    torch.backends.cudnn.allow_tf32 = allowed
    # Caffe's InnerProduct layers use cuBLAS's default math, which never uses TF32.
    torch.backends.cuda.matmul.allow_tf32 = False


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(build, device, batch, size, warmup, timed):
    """Train a fresh VGG16 for warmup + timed iterations; images/s over the timed ones and the peak
    memory PyTorch's allocator held on the device (MiB; None on the CPU)."""
    torch.manual_seed(0)
    model = build(num_classes=NUM_CLASSES).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    loss_of = nn.CrossEntropyLoss()
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
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    return timed * batch / elapsed, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0", help="torch device (cuda:N, or cpu for a dry run)")
    parser.add_argument("--warmup", type=int, default=10, help="iterations before the timed ones")
    parser.add_argument("--timed", type=int, default=40, help="timed iterations")
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--size", type=int, default=224, help="image height and width (at least 32)")
    parser.add_argument("--tf32", choices=("off", "on", "both"), default="both", help="the setting(s) to run, in this process")
    parser.add_argument("--vgg", choices=("auto", "torchvision", "inline"), default="auto",
                        help="torchvision's VGG16, the inline one, or torchvision's where it imports (default)")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.timed < 1 or args.batch < 1:
        parser.error("--warmup, --timed and --batch must be at least 1")
    if args.size < 32:
        parser.error("--size must be at least 32 (VGG16 halves it five times)")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        sys.exit("gpu_check_peer.py: --device %s: %s" % (args.device, str(error).splitlines()[0]))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check_peer.py: --device %s: torch %s sees no CUDA device" % (args.device, torch.__version__))
    name, build = vgg16_builder(args.vgg)
    print("torch %s, VGG16 %s, batch %d at %d x %d, %s" % (
        torch.__version__, name, args.batch, args.size, args.size,
        torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"), flush=True)
    for setting in (("off", "on") if args.tf32 == "both" else (args.tf32,)):
        set_tf32(setting == "on")
        try:
            rate, peak = images_per_second(build, device, args.batch, args.size, args.warmup, args.timed)
        except RuntimeError as error:   # out of memory, a CUDA or cuDNN error: its first line
            sys.exit("gpu_check_peer.py: TF32 %s: %s" % (setting, str(error).strip().splitlines()[0]))
        print("tf32 %s %.1f %s" % (setting, rate, "-" if peak is None else "%.0f" % peak), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
