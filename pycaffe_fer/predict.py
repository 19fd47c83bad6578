"""Prediction with a trained ensemble: image and video files in, the 7-way distribution and label out.

An image that is not already a face crop has its largest face found by OpenCV's Haar cascade and
cropped (with a margin) before it is resized to the nets' input, as the training images were. In a
video every sampled frame's faces are found, and each is a result (frame, time, box). Faces are
scored in batches: one net call per batch of faces, whatever images or frames they come from.
"""
import functools
import os

import cv2
import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .classes import CLASSES
from .datasets.folder import IMAGE_EXTENSIONS
from .errors import InputError
from .resize import fit

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
CASCADE = "haarcascade_frontalface_default.xml"
# A detected face smaller than this share of the image's area means the image is a scene, not a crop.
FACE_CROP_AREA = 0.5
FACE_MARGIN = 0.2
# Frames held back for --annotate until their faces are scored: bounds memory at any --every.
MAX_HELD_FRAMES = 64


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


def face_boxes(image, detector):
    """(x, y, w, h) of every detected face, largest first, with the margin, clipped to the image."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    faces = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    boxes = []
    for x, y, w, h in sorted(faces, key=lambda f: -f[2] * f[3]):
        margin_x, margin_y = int(FACE_MARGIN * w), int(FACE_MARGIN * h)
        left, top = max(0, x - margin_x), max(0, y - margin_y)
        right, bottom = min(gray.shape[1], x + w + margin_x), min(gray.shape[0], y + h + margin_y)
        boxes.append((int(left), int(top), int(right - left), int(bottom - top), int(w * h)))
    return boxes


def crop_face(image, detector):
    """The largest detected face with a margin, when it is small in the image; the image when the
    face fills it (already a crop); None when no face is found."""
    boxes = face_boxes(image, detector)
    if not boxes:
        return None
    if boxes[0][4] >= FACE_CROP_AREA * image.shape[0] * image.shape[1]:
        return image
    x, y, w, h, _ = boxes[0]
    return image[y:y + h, x:x + w]


def media_paths(inputs):
    """(image files, video files) named, and those inside the folders named (sorted), in order. A
    named file without an image extension is taken as a video: anything OpenCV reads."""
    images, videos = [], []
    for item in inputs:
        if os.path.isdir(item):
            for path in sorted(os.path.join(root, name) for root, _, names in os.walk(item) for name in names):
                ext = os.path.splitext(path)[1].lower()
                (images if ext in IMAGE_EXTENSIONS else videos if ext in VIDEO_EXTENSIONS else []).append(path)
        elif os.path.isfile(item):
            (images if os.path.splitext(item)[1].lower() in IMAGE_EXTENSIONS else videos).append(item)
        else:
            raise InputError("%s: no such image, video or folder" % item)
    if not images and not videos:
        raise InputError("no images or videos found in %s" % ", ".join(inputs))
    return images, videos


def net_input(image, size, grayscale):
    """size x size x 3 uint8 BGR, resized as the LMDB builder resizes (gray replicated when trained on gray)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif grayscale:
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return fit(image, size)


class FaceBatcher:
    """Collects (result fields, face crop) pairs and scores them through the backend a batch at a time."""

    def __init__(self, backend, batch_size):
        self.backend, self.batch_size = backend, batch_size
        self.pending, self.done = [], []

    def add(self, fields, crop):
        self.pending.append((fields, net_input(crop, self.backend.input_size, self.backend.grayscale)))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        _, probabilities = self.backend.run(np.stack([face for _, face in self.pending]))
        for (fields, _), p in zip(self.pending, probabilities):
            self.done.append(dict(fields, label=CLASSES[int(np.argmax(p))], probabilities=p))
        self.pending = []


def predict_images(backend, paths, detect=True, batch_size=32):
    """One result per image ({image, label, probabilities}), in order."""
    detector = cv2.CascadeClassifier(cascade_path()) if detect else None
    batcher = FaceBatcher(backend, batch_size)
    for path in tqdm(paths, unit="img", desc="images", disable=None):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise InputError("%s: not a readable image" % path)
        if detector is not None:
            image = crop_face(image, detector)
            if image is None:
                raise InputError("%s: no face found (pass --no-detect if the image is a face crop)" % path)
        batcher.add({"image": path}, image)
    batcher.flush()
    return batcher.done


def open_video(path):
    """cv2.VideoCapture of ``path``, without the warnings each of OpenCV's readers logs when the
    file is not for it (a file no reader takes gets our one-line error instead). PyPI's OpenCV has
    cv2.utils.logging, Debian's 4.6 cv2.setLogLevel, which returns the level it replaces."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        level = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        restore = functools.partial(logging.setLogLevel, level)
    else:
        restore = functools.partial(cv2.setLogLevel, cv2.setLogLevel(0))
    try:
        return cv2.VideoCapture(path)
    finally:
        restore()


def draw(frame, results):
    for result in results:
        x, y, w, h = result["box"]
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
        text = "%s %.2f" % (result["label"], float(np.max(result["probabilities"])))
        cv2.putText(frame, text, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA)


def predict_video(backend, path, detect=True, batch_size=32, every=1, annotate=None):
    """One result per face in every ``every``-th frame ({image, frame, time, box, label,
    probabilities}); with ``annotate``, the video written there with the boxes and labels (each
    frame shows the faces of the last sampled frame)."""
    if every < 1:
        raise InputError("--every must be 1 or more, got %d" % every)
    capture = open_video(path)
    if not capture.isOpened():
        raise InputError("%s: not a readable image or video" % path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    detector = cv2.CascadeClassifier(cascade_path()) if detect else None
    batcher = FaceBatcher(backend, batch_size)
    try:
        if annotate:
            with atomic_path(annotate, keep_extension=True) as tmp:
                _read_frames(capture, path, fps, total, detector, batcher, every, tmp)
        else:
            _read_frames(capture, path, fps, total, detector, batcher, every, None)
    finally:
        capture.release()
    return batcher.done


def _read_frames(capture, path, fps, total, detector, batcher, every, annotate):
    writer, held, shown = None, [], []

    def write_held():
        batcher.flush()
        by_frame = {}
        for result in batcher.done:
            by_frame.setdefault(result["frame"], []).append(result)
        for index, frame in held:
            if index % every == 0:
                shown[:] = by_frame.get(index, [])
            draw(frame, shown)
            writer.write(frame)
        del held[:]

    bar = tqdm(total=total, unit="frame", desc=os.path.basename(path), disable=None)
    index = 0
    with bar:
        while True:
            sampled = index % every == 0
            if sampled or annotate:
                ok, frame = capture.read()
            else:
                ok, frame = capture.grab(), None
            if not ok:
                break
            if sampled:
                height, width = frame.shape[:2]
                boxes = face_boxes(frame, detector) if detector is not None else [(0, 0, width, height, 0)]
                for x, y, w, h, _ in boxes:
                    batcher.add({"image": path, "frame": index, "time": round(index / fps, 3), "box": [x, y, w, h]},
                                frame[y:y + h, x:x + w])
            if annotate:
                if writer is None:
                    writer = cv2.VideoWriter(annotate, cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
                    if not writer.isOpened():
                        raise InputError("%s: OpenCV cannot write this video (its extension names a container "
                                         "OpenCV's build cannot write; try .mp4 or .avi)" % annotate)
                held.append((index, frame))
                if len(held) >= MAX_HELD_FRAMES:
                    write_held()
            index += 1
            bar.update(1)
    if index == 0:
        raise InputError("%s: not a readable image or video (no frame could be decoded)" % path)
    if annotate:
        write_held()
        writer.release()
    batcher.flush()


def predict(backend, inputs, detect=True, batch_size=32, every=1, annotate=None):
    """Results of the images (first, in order), then of each video's faces, by ``backend``
    (pycaffe_fer.backends.open_backend)."""
    images, videos = media_paths(inputs)
    if annotate and len(videos) != 1:
        raise InputError("--annotate writes one video: name exactly one video (got %d)" % len(videos))
    results = predict_images(backend, images, detect, batch_size) if images else []
    for path in videos:
        results += predict_video(backend, path, detect, batch_size, every, annotate)
    return results
