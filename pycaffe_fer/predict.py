"""Prediction with a trained ensemble: image files in, the 7-way distribution and label out.

An image that is not already a face crop has its largest face found by OpenCV's Haar cascade and
cropped (with a margin) before it is resized to the nets' input, as the training images were.
"""
import os

import cv2
import numpy as np

from . import ensemble
from .classes import CLASSES
from .errors import InputError
from .lmdb_build import fit

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")
CASCADE = "haarcascade_frontalface_default.xml"
# A detected face smaller than this share of the image's area means the image is a scene, not a crop.
FACE_CROP_AREA = 0.5
FACE_MARGIN = 0.2


def cascade_path():
    """OpenCV's bundled frontal-face cascade: pip/conda OpenCV ship it in cv2.data, Debian in opencv-data."""
    folders = [getattr(getattr(cv2, "data", None), "haarcascades", "")]
    folders += ["/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades"]
    for folder in folders:
        path = os.path.join(folder, CASCADE)
        if folder and os.path.exists(path):
            return path
    raise InputError("OpenCV's %s was not found (Debian: apt-get install opencv-data); pass --no-detect "
                     "for images that are already face crops" % CASCADE)


def crop_face(image, detector):
    """The largest detected face with a margin, when it is small in the image; else the image."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    faces = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(faces) == 0:
        return image
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    if w * h >= FACE_CROP_AREA * gray.shape[0] * gray.shape[1]:
        return image
    margin_x, margin_y = int(FACE_MARGIN * w), int(FACE_MARGIN * h)
    top, left = max(0, y - margin_y), max(0, x - margin_x)
    return image[top:y + h + margin_y, left:x + w + margin_x]


def image_paths(inputs):
    """The image files named, and those inside the folders named (sorted), in order."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(os.path.join(root, name) for root, _, names in os.walk(item)
                            for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise InputError("%s: no such image or folder" % item)
    if not paths:
        raise InputError("no images found in %s" % ", ".join(inputs))
    return paths


def net_input(image, size, grayscale):
    """3 x size x size uint8 BGR, resized as the LMDB builder resizes (gray replicated when trained on gray)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif grayscale:
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return fit(image, size).transpose(2, 0, 1)


def predict(run_root, inputs, detect=True, gpu=None, batch_size=16):
    """[(path, label name, 7 probabilities)] for each image, by the ensemble of `run_root`."""
    from .scoring import load_nets

    spec = ensemble.load_ensemble(run_root)
    nets = load_nets(spec["members"], gpu)
    detector = cv2.CascadeClassifier(cascade_path()) if detect else None
    paths = image_paths(inputs)

    def batches():
        for start in range(0, len(paths), batch_size):
            images = []
            for path in paths[start:start + batch_size]:
                image = cv2.imread(path, cv2.IMREAD_COLOR)
                if image is None:
                    raise InputError("%s: not a readable image" % path)
                if detector is not None:
                    image = crop_face(image, detector)
                images.append(net_input(image, int(spec["input_size"]), spec["grayscale"]))
            yield np.stack(images), np.zeros(len(images), dtype=int)

    scores, _ = ensemble.forward_scores(nets, batches(), spec["mean_value"], spec["input_scale"])
    fused = ensemble.fuse(scores, spec["fusion"])
    probabilities = ensemble.softmax(fused) if spec["fusion"] == "score" else fused
    return [(path, CLASSES[int(p.argmax())], p) for path, p in zip(paths, probabilities)]
