"""Prediction with a trained ensemble: image and video files in, the 7-way distribution and label out.

An image that is not already a face crop has its faces found (pycaffe_fer.faces: the res10 SSD by
default, or the Haar cascade) and each is cropped with a margin and resized to the nets' input, as
the training images were: one result per face (index, box, confidence), largest first, or only the
largest. In a video every sampled frame's faces are found the same way. Faces are scored in
batches: one net call per batch of faces, whatever images or frames they come from.

A file that cannot be read, a path that does not exist, or an image with no face, is a result with
``error`` (and no label):
the other files are still predicted, unless ``strict``, where it stops everything.
"""
import functools
import os

import cv2
import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .classes import CLASSES
from .datasets.base import ImageFile, encode_image
from .datasets.folder import IMAGE_EXTENSIONS
from .errors import InputError
from .faces import Face, crop, image_faces
from .resize import fit

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
FACES = ("all", "largest")
# Frames held back for --annotate until their faces are scored: bounds memory at any --every.
MAX_HELD_FRAMES = 64


def media_paths(inputs):
    """(image files, video files) named, and those inside the folders named (sorted), in order. A
    named file without an image extension is taken as a video: anything OpenCV reads. A named path
    that is neither file nor folder goes with the images, where it fails as an unreadable file does."""
    images, videos = [], []
    for item in inputs:
        if os.path.isdir(item):
            for path in sorted(os.path.join(root, name) for root, _, names in os.walk(item) for name in names):
                ext = os.path.splitext(path)[1].lower()
                (images if ext in IMAGE_EXTENSIONS else videos if ext in VIDEO_EXTENSIONS else []).append(path)
        elif os.path.isfile(item) and os.path.splitext(item)[1].lower() not in IMAGE_EXTENSIONS:
            videos.append(item)
        else:
            images.append(item)
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
    """Collects (result fields, face crop) pairs and scores them through the backend a batch at a
    time; failed inputs' records (``fail``) keep their place among the results."""

    def __init__(self, backend, batch_size, strict=False, on_error=None):
        self.backend, self.batch_size = backend, batch_size
        self.strict, self.on_error = strict, on_error
        self.pending, self.done = [], []

    def add(self, fields, crop):
        self.pending.append((fields, net_input(crop, self.backend.input_size, self.backend.grayscale)))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def fail(self, path, error):
        """The record of an input that could not be predicted; with ``strict``, the error itself."""
        if self.strict:
            raise error
        if self.on_error:
            self.on_error(str(error))
        self.pending.append(({"image": path, "error": str(error)}, None))

    def flush(self):
        faces = [face for _, face in self.pending if face is not None]
        probabilities = iter(self.backend.run(np.stack(faces))[1] if faces else ())
        for fields, face in self.pending:
            if face is None:
                self.done.append(fields)
            else:
                p = next(probabilities)
                self.done.append(dict(fields, label=CLASSES[int(np.argmax(p))], probabilities=p))
        self.pending = []


def face_fields(face, index):
    fields = {"box": [face.x, face.y, face.w, face.h]}
    if index is not None:
        fields.update(face=index, confidence=face.confidence)
    return fields


def predict_images(backend, paths, detector=None, faces="all", batch_size=32, strict=False, on_error=None,
                   annotate=None):
    """One result per face of each image ({image, face, box, confidence, label, probabilities}), in
    order, by ``detector`` (pycaffe_fer.faces.open_detector); without one, the images are face crops:
    one result each ({image, label, probabilities}). With ``annotate``, the (one) image is written
    there with its boxes and labels."""
    batcher = FaceBatcher(backend, batch_size, strict, on_error)
    for path in tqdm(paths, unit="img", desc="images", disable=None):
        try:
            if not os.path.isfile(path):
                raise InputError("%s: no such image, video or folder" % path)
            image, _ = ImageFile(path).load(gray=False)
        except InputError as error:
            batcher.fail(path, error)
            continue
        if detector is None:
            batcher.add({"image": path}, image)
            continue
        found = image_faces(image, detector, faces)
        if not found:
            batcher.fail(path, InputError("%s: no face found (pass --no-detect if the image is a face crop)" % path))
        for index, face in enumerate(found):
            batcher.add(dict({"image": path}, **face_fields(face, index)), crop(image, face))
    batcher.flush()
    if annotate and any("label" in r for r in batcher.done):
        draw(image, [r for r in batcher.done if "box" in r])
        data = encode_image(annotate, image)
        with atomic_path(annotate) as tmp, open(tmp, "wb") as handle:
            handle.write(data)
    return batcher.done


class UnreadableVideo(InputError):
    """The input is no video OpenCV can read (unlike a failure to write --annotate's output)."""


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


def predict_video(backend, path, detector=None, faces="all", batch_size=32, every=1, annotate=None,
                  strict=False, on_error=None):
    """One result per face in every ``every``-th frame ({image, frame, time, face, box, confidence,
    label, probabilities}; without ``detector``, the whole frame: {image, frame, time, box, label,
    probabilities}); with ``annotate``, the video written there with the boxes and labels (each
    frame shows the faces of the last sampled frame). A file no frame can be read from is one
    error record."""
    if every < 1:
        raise InputError("--every must be 1 or more, got %d" % every)
    batcher = FaceBatcher(backend, batch_size, strict, on_error)
    capture = open_video(path)
    try:
        if not capture.isOpened():
            raise UnreadableVideo("%s: not a readable image or video" % path)
        if annotate:
            with atomic_path(annotate, keep_extension=True) as tmp:
                _read_frames(capture, path, detector, faces, batcher, every, tmp)
        else:
            _read_frames(capture, path, detector, faces, batcher, every, None)
    except UnreadableVideo as error:
        batcher.fail(path, error)
        batcher.flush()
    finally:
        capture.release()
    return batcher.done


def _read_frames(capture, path, detector, which, batcher, every, annotate):
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
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
                if detector is None:
                    found = [(None, Face(0, 0, width, height, None))]
                else:
                    found = list(enumerate(detector.faces(frame)[:1 if which == "largest" else None]))
                for face_index, face in found:
                    fields = {"image": path, "frame": index, "time": round(index / fps, 3)}
                    batcher.add(dict(fields, **face_fields(face, face_index)), crop(frame, face))
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
        raise UnreadableVideo("%s: not a readable image or video (no frame could be decoded)" % path)
    if annotate:
        write_held()
        writer.release()
    batcher.flush()


def predict(backend, inputs, detector=None, faces="all", batch_size=32, every=1, annotate=None, strict=False,
            on_error=None):
    """Results of the images (first, in order), then of each video's faces, by ``backend``
    (pycaffe_fer.backends.open_backend) and ``detector`` (pycaffe_fer.faces.open_detector; None:
    the inputs are face crops). An input that fails is a record {image, error}, and ``on_error``
    gets its message; with ``strict`` the first failure raises its InputError instead."""
    if faces not in FACES:
        raise InputError("--faces %r: expected one of %s" % (faces, ", ".join(FACES)))
    images, videos = media_paths(inputs)
    if annotate and len(images) + len(videos) != 1:
        raise InputError("--annotate writes one image or video: name exactly one (got %d)" % (len(images) + len(videos)))
    options = dict(detector=detector, faces=faces, batch_size=batch_size, strict=strict, on_error=on_error,
                   annotate=annotate)
    results = predict_images(backend, images, **options) if images else []
    for path in videos:
        results += predict_video(backend, path, every=every, **options)
    return results
