"""The embedded synthetic expression set: parametric faces drawn with OpenCV, each a known mixture
of the seven expressions, written in the layouts of the real datasets.

An image's expression parameters (brow height and tilt, eye openness, mouth curve, openness and
width, nose wrinkle) are the mixture-weighted average of the classes' prototypes plus individual
variation; its label is one annotator's vote, drawn from the mixture (mostly the dominant class,
otherwise one of the mixed-in ones, as with real annotators). The minor weights go mostly to the
classes real data confuses (fear with surprise and sadness, disgust with anger, sadness with
neutral), so the classes overlap the way real ones do. The mean mixture of the images labelled j is
the true soft label of class j (``true_soft_labels``): it is what the constructor's fusion (eqs. 2-3)
of a well-calibrated classifier's predictions estimates, so a constructed D can be compared with it.

Every face is a person's (an ``Identity``: face shape, skin tone, hair, ears, beard, glasses, a
mole), drawn from a population: each image of the expression set is a person of the "expression"
population of its own; the pretraining set (``draw_portraits``, pycaffe_fer/pretrain.py: the
synthetic VGG-Face) shows persons of the "faces" population many times each, so no person of the
expression set is one the pretrained net learned. Expression, pose, lighting, noise, blur,
occluders, background and gaze vary per image and leave the expression features (mouth, brows,
eyes) visible at 48 x 48.

Deterministic: every image is drawn from its own generator seeded by (seed, layout, split, index),
and every person from one seeded by (seed, population, number), so the same seed gives the same bytes.
"""
import collections
import contextlib
import csv
import multiprocessing
import os

import cv2
import numpy as np

from .atomic import atomic_path
from .classes import CLASSES, NUM_CLASSES
from .datasets import LAYOUTS
from .datasets.base import encode_image
from .datasets.fer2013 import USAGE_OF_SPLIT, row_key
from .datasets.raf import RAF_TO_CANONICAL
from .errors import InputError, check_room
from .lmdb_build import default_workers, single_threaded_opencv
from .lmdb_io import lmdb_keys, parse_record_key
from .softlabel import construct, row_entropy

# Expression parameters, each in [-1, 1] (signed) or [0, 1].
PARAMETERS = ("brow_raise", "brow_tilt", "eye_open", "mouth_curve", "mouth_open", "mouth_width", "wrinkle")
# One prototype per canonical class. brow_tilt > 0 raises the inner ends of the brows (sadness, fear),
# < 0 lowers them into a V (anger); mouth_curve > 0 lifts the corners (smile), < 0 drops them.
PROTOTYPES = np.array([
    # raise  tilt  eye   curve  open  width  wrinkle
    [-0.9, -1.0, 0.60, -0.45, 0.10, 0.45, 0.35],   # AN
    [-0.3, -0.3, 0.05, -0.80, 0.50, 0.90, 1.00],   # DI: squint, wrinkled nose, wide raised lip
    [0.80, 0.80, 1.00, -0.35, 0.55, 0.90, 0.00],   # FE
    [0.10, 0.00, 0.35, 1.00, 0.45, 1.00, 0.00],    # HA
    [0.00, 0.90, 0.35, -0.80, 0.00, 0.55, 0.00],   # SA
    [1.00, 0.10, 1.00, 0.00, 1.00, 0.30, 0.00],    # SU
    [0.00, 0.00, 0.60, 0.00, 0.00, 0.60, 0.00],    # NE
])
# Where each class's minor mixture weights go (row: dominant class; the diagonal is unused).
AFFINITY = np.array([
    # AN    DI    FE    HA    SA    SU    NE
    [0.00, 0.45, 0.10, 0.03, 0.17, 0.05, 0.20],    # AN: disgust
    [0.60, 0.00, 0.10, 0.02, 0.15, 0.03, 0.10],    # DI: anger
    [0.07, 0.03, 0.00, 0.03, 0.35, 0.42, 0.10],    # FE: surprise and sadness
    [0.05, 0.02, 0.05, 0.00, 0.05, 0.30, 0.53],    # HA
    [0.12, 0.05, 0.18, 0.03, 0.00, 0.02, 0.60],    # SA: neutral
    [0.03, 0.02, 0.55, 0.20, 0.03, 0.00, 0.17],    # SU: fear
    [0.13, 0.02, 0.07, 0.13, 0.55, 0.10, 0.00],    # NE: sadness
])
# Class frequencies: FER-2013's imbalance, with disgust less rare so a small set still holds some.
CLASS_PRIOR = np.array([0.13, 0.08, 0.13, 0.20, 0.16, 0.11, 0.19])
DOMINANT_WEIGHT = (0.42, 0.9)   # range of the dominant class's weight (kept the largest)
INDIVIDUAL_SD = 0.08            # per-parameter variation between faces of one mixture
CANVAS = 192                    # faces are drawn at this size, then area-resized

# Stable numbers for seeding each (layout, split) stream.
_STREAMS = {("fer2013", "train"): 1, ("fer2013", "val"): 2, ("fer2013", "test"): 3,
            ("raf", "train"): 4, ("raf", "test"): 5, ("sfew", "train"): 6, ("sfew", "val"): 7}
SFEW_FOLDERS = {0: "Angry", 1: "Disgust", 2: "Fear", 3: "Happy", 4: "Sad", 5: "Surprise", 6: "Neutral"}
# FER+ vote columns after Usage and Image name: (canonical label or None, name).
FERPLUS_COLUMNS = ((6, "neutral"), (3, "happiness"), (5, "surprise"), (4, "sadness"), (0, "anger"),
                   (1, "disgust"), (2, "fear"), (None, "contempt"), (None, "unknown"))
# FER+ marks a few rows "not a face" (NF = 10, no votes): here every 60th, so that every split of
# 60 rows or more has one, whatever the seed.
FERPLUS_NON_FACE_EVERY = 60


def class_counts(n):
    """Images per class among n: CLASS_PRIOR by largest remainders, every class at least once when n >= 7."""
    exact = CLASS_PRIOR * n
    counts = np.floor(exact).astype(int)
    if n >= NUM_CLASSES:
        counts = np.maximum(counts, 1)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    i = 0
    while counts.sum() < n:
        counts[order[i % NUM_CLASSES]] += 1
        i += 1
    while counts.sum() > n:
        counts[np.argmax(counts)] -= 1
    return counts


def sample_mixture(rng, label):
    """Seven weights summing to 1 whose largest is ``label``'s; the rest follow AFFINITY[label]."""
    others = [k for k in range(NUM_CLASSES) if k != label]
    weights = np.zeros(NUM_CLASSES)
    weights[label] = rng.uniform(*DOMINANT_WEIGHT)
    while True:  # redraw the minor weights until none outweighs the dominant one
        weights[others] = (1 - weights[label]) * rng.dirichlet(0.2 + 4 * AFFINITY[label, others])
        if weights[others].max() < weights[label]:
            return weights


def expression_of(rng, mixture):
    """The parameters of a face showing ``mixture``, with individual variation."""
    params = mixture.dot(PROTOTYPES) + rng.normal(0, INDIVIDUAL_SD, len(PARAMETERS))
    low = np.array([-1, -1, 0, -1, 0, 0, 0])
    return np.clip(params, low, 1)


def _points(values):
    return np.round(np.asarray(values) * 16).astype(np.int32)  # cv2 drawing with shift=4: 1/16 px


_T = np.linspace(0, 1, 16)[:, None]


def _curve(start, middle, end):
    """16 points of the quadratic curve from ``start`` through ``middle`` (at t = 0.5) to ``end``."""
    start, middle, end = (np.asarray(p, dtype=np.float64) for p in (start, middle, end))
    control = 2 * middle - (start + end) / 2
    return (1 - _T) ** 2 * start + 2 * _T * (1 - _T) * control + _T ** 2 * end


def _ellipse(img, center, axes, colour, thickness=-1, angle=0.0):
    cv2.ellipse(img, tuple(_points(center)), tuple(_points(axes)), angle, 0, 360, colour, thickness,
                cv2.LINE_AA, 4)


def _polyline(img, points, colour, thickness, closed=False):
    cv2.polylines(img, [_points(points)], closed, colour, max(1, int(round(thickness))), cv2.LINE_AA, 4)


def _shade(colour, factor):
    return tuple(min(255.0, max(0.0, c * factor)) for c in colour)


# A person: what stays the same in every image of them. Colours are BGR, lengths in canvas pixels;
# hair_style one of HAIR_STYLES; iris: the gray of the eyes' irises; face_dy moves the face down from the canvas's centre, eye_dy (up),
# nose_dy and mouth_dy (down) place the features from the face's centre; beard: 0 for none, else its
# darkness (0-1, towards the hair's colour); glasses: None or (frame colour, thickness); mole: None
# or (x and y offset from the face's centre, radius).
Identity = collections.namedtuple("Identity", "skin hair hair_style hair_width hair_top face_w face_h face_dy ear_w "
                                              "ear_h eye_dx eye_dy eye_w iris brow_thickness nose_dy nose_w mouth_dy "
                                              "beard glasses mole")
# crop: a cap of hair; long: down both sides of the face; bald: none; volume: a wide mass around the head.
HAIR_STYLES = ("crop", "long", "bald", "volume")
# Identities are drawn from populations of their own (the expression set's faces, the pretraining
# set's persons): no face of the expression set is a person the pretrained net learned, whatever
# the seeds.
POPULATIONS = {"expression": 1, "faces": 2, "video": 3}
IDENTITY_STREAM = 10       # seeds identities: [seed, IDENTITY_STREAM, population, number...]
FACES_STREAM = 9           # seeds the pretraining set's images: [seed, FACES_STREAM, person, image]


def draw_identity(rng):
    """A person: face shape, skin tone, hair, ears and accessories (beard, glasses, a mole)."""
    # The features expressions move (eyes, brows, nose, mouth) keep the sizes and contrasts the
    # expression set had before it had persons: wider, the disgust row of make demo's D named anger.
    lightness = rng.uniform(110, 215)
    skin = tuple(lightness * np.array([rng.uniform(0.65, 0.85), rng.uniform(0.8, 0.92), 1.0]))
    hair = tuple(min(255.0, rng.uniform(10, 170)) * np.array([1.0, rng.uniform(1.0, 1.3), rng.uniform(1.0, 1.5)]))
    face_w, face_h = rng.uniform(66, 84), rng.uniform(86, 98)
    beard = rng.uniform(0.3, 0.8) if rng.random() < 0.25 else 0.0
    glasses = (tuple(rng.uniform(0, 80, 3)), rng.uniform(2, 3)) if rng.random() < 0.2 else None
    mole = (rng.choice((-1, 1)) * rng.uniform(44, 58), rng.uniform(0, 30), rng.uniform(2.5, 5)) \
        if rng.random() < 0.3 else None
    return Identity(skin=skin, hair=hair, hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
                    hair_width=rng.uniform(4, 14), hair_top=rng.uniform(0.25, 0.45), face_w=face_w, face_h=face_h,
                    face_dy=rng.uniform(-4, 4), ear_w=rng.uniform(7, 13), ear_h=rng.uniform(14, 22),
                    eye_dx=rng.uniform(30, 36), eye_dy=rng.uniform(22, 28), eye_w=rng.uniform(15, 19),
                    iris=rng.uniform(20, 70), brow_thickness=rng.uniform(10, 13), nose_dy=rng.uniform(8, 14),
                    nose_w=rng.uniform(5, 9), mouth_dy=rng.uniform(42, 50), beard=beard, glasses=glasses, mole=mole)


def person(seed, population, *number):
    """The Identity of person ``number`` (one or more integers) of ``population`` (POPULATIONS)."""
    return draw_identity(np.random.default_rng([seed, IDENTITY_STREAM, POPULATIONS[population]] + list(number)))


def draw_face(rng, expression, who):
    """A CANVAS x CANVAS BGR uint8 face of the person ``who`` (an Identity) with ``expression``; the
    background and the gaze drawn from ``rng``. Every expression feature stays within CANVAS / 2 +- 66
    columns, so the face's sides are the person's alone."""
    raise_, tilt, eye_open, curve, mouth_open, mouth_width, wrinkle = expression
    c = CANVAS / 2.0
    img = np.empty((CANVAS, CANVAS, 3), np.uint8)
    img[:] = rng.uniform(60, 190, 3)
    # Background clutter: a few soft blobs.
    for _ in range(rng.integers(0, 2)):
        _ellipse(img, rng.uniform(0, CANVAS, 2), rng.uniform(10, 50, 2), tuple(rng.uniform(40, 200, 3)))
    skin, hair = who.skin, who.hair
    face_y = c + 8 + who.face_dy
    eye_y = face_y - who.eye_dy
    if who.hair_style == "volume":
        _ellipse(img, (c, face_y - who.face_h * who.hair_top), (who.face_w + 16 + who.hair_width, who.face_h), hair)
    elif who.hair_style != "bald":
        _ellipse(img, (c, face_y - who.face_h * who.hair_top), (who.face_w + who.hair_width, who.face_h * 0.8), hair)
    if who.hair_style == "long":      # down both sides, over the ears
        for side in (-1, 1):
            _ellipse(img, (c + side * who.face_w, face_y + 20), (who.hair_width + 10, who.face_h), hair)
    else:
        for side in (-1, 1):
            _ellipse(img, (c + side * who.face_w, eye_y + 12), (who.ear_w, who.ear_h), _shade(skin, 0.9))
    _ellipse(img, (c, face_y), (who.face_w, who.face_h), skin)
    # Beard (on the chin, below the lowest an open mouth reaches) and mole (on a cheek, beside the
    # smile's folds): the expression features stay as visible as on any face.
    mouth_y = face_y + who.mouth_dy
    if who.beard:
        _ellipse(img, (c, mouth_y + 52), (who.face_w * 0.55, 22),
                 tuple(s * (1 - who.beard) + h * who.beard for s, h in zip(skin, hair)))
    if who.mole:
        _ellipse(img, (c + who.mole[0], face_y + who.mole[1]), (who.mole[2], who.mole[2]), _shade(skin, 0.45))
    dark = _shade(skin, 0.2)
    brow = tuple(min(h, d) for h, d in zip(hair, dark))  # darker than the skin even for fair hair
    eye_dx, eye_w = who.eye_dx, who.eye_w
    for side in (-1, 1):
        x = c + side * eye_dx
        eye_h = 2 + 12 * eye_open
        _ellipse(img, (x, eye_y), (eye_w, eye_h), (235, 235, 235))
        _ellipse(img, (x + rng.uniform(-2, 2), eye_y), (7, min(7, eye_h)), (who.iris,) * 3)
        lid = _curve((x - eye_w, eye_y), (x, eye_y - eye_h), (x + eye_w, eye_y))
        _polyline(img, lid, dark, 3)
        # Brow: raised by brow_raise, inner end lifted (tilt > 0) or lowered into a V (tilt < 0).
        base = eye_y - 21 - 13 * raise_
        inner = (x - side * eye_w * 0.7, base - 14 * tilt)
        outer = (x + side * eye_w * 1.2, base + 4 * tilt)
        _polyline(img, _curve(inner, ((inner[0] + outer[0]) / 2, (inner[1] + outer[1]) / 2 - 3), outer),
                  brow, who.brow_thickness)
    # Nose, and the disgust/anger wrinkles across its bridge and beside it.
    nose_y = face_y + who.nose_dy
    _polyline(img, [(c, eye_y + 4), (c + 3, nose_y)], _shade(skin, 0.8), 3)
    for side in (-1, 1):
        _ellipse(img, (c + side * who.nose_w, nose_y + 2), (4, 2.5), _shade(skin, 0.55))
    if wrinkle > 0.05:
        crease = _shade(skin, 1 - 0.8 * wrinkle)
        for dy in (-6, 0, 6):
            _polyline(img, [(c - 9, eye_y + dy), (c, eye_y + dy - 3), (c + 9, eye_y + dy)], crease, 3.5)
    # Mouth: corners lifted by mouth_curve, opening mouth_open, half-width from mouth_width.
    half_w = 15 + 21 * mouth_width
    corner_y = mouth_y - 18 * curve
    gap = 30 * mouth_open
    lift = 4 * max(curve, 0)
    left, right = (c - half_w, corner_y), (c + half_w, corner_y)
    upper = _curve(left, (c, mouth_y - 0.3 * gap + lift), right)
    lower = _curve(left, (c, mouth_y + 0.7 * gap + lift + 1.5), right)
    if wrinkle > 0.05 or curve > 0.3:
        fold = _shade(skin, 1 - 0.4 * max(wrinkle, curve - 0.3))
        for side in (-1, 1):
            _polyline(img, _curve((c + side * 12, nose_y), (c + side * (half_w + 2), (nose_y + corner_y) / 2),
                                  (c + side * (half_w + 3), corner_y + 2)), fold, 2.5)
    lips = (skin[0] * 0.25, skin[1] * 0.2, skin[2] * 0.45)
    if gap > 2:
        cv2.fillPoly(img, [_points(np.vstack([upper, lower[::-1]]))], (25, 20, 30), cv2.LINE_AA, 4)
        if curve > 0.3:  # teeth of an open smile
            _polyline(img, upper + [0, min(4, gap * 0.2)], (225, 225, 225), min(7, gap * 0.35))
    _polyline(img, upper, lips, 7)
    _polyline(img, lower, lips, 7)
    if who.glasses:
        frame, thickness = who.glasses
        for side in (-1, 1):
            _ellipse(img, (c + side * eye_dx, eye_y), (eye_w + 8, 15), frame, int(round(thickness)))
        _polyline(img, [(c - eye_dx + eye_w + 8, eye_y), (c + eye_dx - eye_w - 8, eye_y)], frame, thickness)
    return img


def render(rng, mixture, size, gray, identity=None):
    """A size x size face (gray H x W, or BGR H x W x 3) of ``identity`` (default: a person of its
    own, drawn from ``rng``) showing ``mixture``, with sometimes an occluder (a hand, a microphone, a
    scarf), pose jitter, blur, lighting and sensor noise (the last three applied at the output size,
    where they are cheap)."""
    img = draw_face(rng, expression_of(rng, mixture), identity or draw_identity(rng))
    if rng.random() < 0.1:
        _ellipse(img, (rng.uniform(20, CANVAS - 20), rng.uniform(110, CANVAS)), rng.uniform(14, 26, 2),
                 tuple(rng.uniform(30, 230, 3)), angle=rng.uniform(0, 180))
    if gray:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    c = CANVAS / 2.0
    matrix = cv2.getRotationMatrix2D((c, c), rng.uniform(-8, 8), rng.uniform(0.93, 1.07))
    matrix[:, 2] += rng.uniform(-6, 6, 2)
    img = cv2.warpAffine(img, matrix, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.25, 0.6) * size / 48.0)
    angle = rng.uniform(0, 2 * np.pi)
    axis = np.arange(size) - size / 2.0
    ramp = (np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None]) / (size / 2.0)
    gain = rng.uniform(0.85, 1.1) * (1 + rng.uniform(0, 0.25) * ramp)
    out = img.astype(np.float32) * (gain if gray else gain[:, :, None]) + rng.uniform(-10, 10)
    out += rng.normal(0, rng.uniform(2, 6), out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _draw(task):
    """(label, mixture, image) of one image of a stream, from its own generator; the face is a
    person of the expression population of its own."""
    seed, stream, index, dominant, size, gray = task
    rng = np.random.default_rng([seed, stream, index])
    mixture = sample_mixture(rng, dominant)
    label = int(rng.choice(NUM_CLASSES, p=mixture / mixture.sum()))
    return label, mixture, render(rng, mixture, size, gray, expression_person(seed, stream, index))


def expression_person(seed, stream, index):
    """The person in image ``index`` of an expression set's (layout, split) stream (_STREAMS)."""
    return person(seed, "expression", stream, index)


def draw_split(seed, layout, split, n, size, gray, pool=None):
    """Yield (index, label, mixture, image) for the n images of a (layout, split) stream, in order;
    the dominant classes of the mixtures follow CLASS_PRIOR, the labels are votes drawn from them."""
    stream = _STREAMS[layout, split]
    dominant = np.random.default_rng([seed, stream]).permutation(np.repeat(np.arange(NUM_CLASSES), class_counts(n)))
    tasks = [(seed, stream, index, int(d), size, gray) for index, d in enumerate(dominant)]
    results = pool.imap(_draw, tasks, 32) if pool else map(_draw, tasks)
    for task, (label, mixture, image) in zip(tasks, results):
        yield task[2], label, mixture, image


# The expressions of the pretraining set's photographs, as in a celebrity set such as VGG-Face's:
# mostly neutral or smiling.
PORTRAIT_PRIOR = np.array([0.03, 0.02, 0.02, 0.35, 0.05, 0.05, 0.48])


def _draw_portrait(task):
    """Image ``number`` of pretraining person ``who``, its dominant expression drawn from PORTRAIT_PRIOR."""
    seed, who, number, size, gray = task
    rng = np.random.default_rng([seed, FACES_STREAM, who, number])
    mixture = sample_mixture(rng, int(rng.choice(NUM_CLASSES, p=PORTRAIT_PRIOR)))
    return render(rng, mixture, size, gray, portrait_person(seed, who))


def portrait_person(seed, who):
    """Person ``who`` (0, 1, ...) of the pretraining set."""
    return person(seed, "faces", who)


def draw_portraits(seed, pairs, size, gray, pool=None):
    """The images of the pretraining set's (person, image number) ``pairs``, in order: persons of
    the "faces" population, each image with its own expression, pose, lighting and noise."""
    tasks = [(seed, int(who), int(number), size, gray) for who, number in pairs]
    return pool.imap(_draw_portrait, tasks, 32) if pool else map(_draw_portrait, tasks)


def true_soft_labels(mixtures, labels):
    """The true soft-label matrix: row j is the mean mixture of the images of class j (rows sum to 1).

    The same fusion as the constructor's eqs. 2-3, applied to the known mixtures instead of predictions.
    """
    return construct(mixtures, labels, NUM_CLASSES)


def read_mixtures(path, split=None):
    """(keys, labels, N x 7 mixtures) of a ``*_mixtures.csv`` written here, all rows or those of
    ``split``. Keys are the readers' source keys, so they match the ``%08d_<key>`` LMDB keys."""
    with open(path, newline="") as handle:
        rows = [row for row in list(csv.reader(handle))[1:] if split is None or row[1] == split]
    return ([row[0] for row in rows], np.array([int(row[2]) for row in rows], dtype=int),
            np.array([[float(v) for v in row[3:]] for row in rows]).reshape(-1, NUM_CLASSES))


def fer2013_mixtures_path(source):
    """The fer2013_mixtures.csv beside the synthetic fer2013.csv (or fer2013new.csv) ``source``."""
    return os.path.join(os.path.dirname(os.path.abspath(source)), "fer2013_mixtures.csv")


def true_soft_labels_of(source, split):
    """The true soft-label matrix of a split of the synthetic fer2013.csv (or fer2013new.csv) ``source``."""
    _, labels, mixtures = read_mixtures(fer2013_mixtures_path(source), split)
    return true_soft_labels(mixtures, labels)


def label_noise_entropy(source, split):
    """The mean entropy (nats) of the true mixtures of a split's faces: what a net that knew each
    face's mixture would still lose on labels drawn from it, so a hard-label training loss below it
    means the net memorises its noisy labels."""
    _, _, mixtures = read_mixtures(fer2013_mixtures_path(source), split)
    return float(row_entropy(mixtures).mean())


def mixtures_of_lmdb(source, split, lmdb_path):
    """The true mixture of every record of an LMDB built from a split of the synthetic fer2013.csv
    ``source``, in the LMDB's (shuffled) record order: N x 7."""
    keys, _, mixtures = read_mixtures(fer2013_mixtures_path(source), split)
    by_key = dict(zip(keys, mixtures))
    return np.array([by_key[parse_record_key(key)[1]] for key in lmdb_keys(lmdb_path)])


def _write_mixtures(path, rows):
    """``rows``: (key, split, label, mixture) per image."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("key", "split", "label") + CLASSES)
        for key, split, label, mixture in rows:
            writer.writerow([key, split, label] + ["%.6f" % w for w in mixture])


def write_fer2013(out, seed, sizes, pool=None, ferplus=False):
    """fer2013.csv in the FER-2013 format (Training, then PublicTest, then PrivateTest rows),
    fer2013_mixtures.csv and, with ``ferplus``, fer2013new.csv. fer2013.csv is renamed into place
    last, when the others are whole."""
    rows = []
    with atomic_path(os.path.join(out, "fer2013.csv")) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(("emotion", "pixels", "Usage"))
            for split in ("train", "val", "test"):
                for _, label, mixture, image in draw_split(seed, "fer2013", split, sizes[split], 48, True, pool):
                    pixels = " ".join(map(str, image.ravel().tolist()))
                    handle.write('%d,"%s",%s\n' % (label, pixels, USAGE_OF_SPLIT[split]))
                    rows.append((row_key(len(rows)), split, label, mixture))
        _write_mixtures(os.path.join(out, "fer2013_mixtures.csv"), rows)
        if ferplus:
            write_ferplus(out, seed, rows)


def write_ferplus(out, seed, fer_rows):
    """fer2013new.csv: ten crowd votes per fer2013.csv row, drawn from the row's mixture (a few
    votes for contempt/unknown, and some rows marked not-a-face)."""
    rng = np.random.default_rng([seed, 8])
    with atomic_path(os.path.join(out, "fer2013new.csv")) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("Usage", "Image name") + tuple(name for _, name in FERPLUS_COLUMNS) + ("NF",))
        for index, (_, split, _, mixture) in enumerate(fer_rows):
            usage = USAGE_OF_SPLIT[split]
            if index % FERPLUS_NON_FACE_EVERY == FERPLUS_NON_FACE_EVERY // 2:
                writer.writerow([usage, ""] + [0] * len(FERPLUS_COLUMNS) + [10])
                continue
            probs = np.array([0.92 * mixture[label] if label is not None else 0.04 for label, _ in FERPLUS_COLUMNS])
            votes = rng.multinomial(10, probs / probs.sum())
            writer.writerow([usage, row_key(index) + ".png"] + votes.tolist() + [0])


def write_image(path, image, params=()):
    with open(path, "wb") as handle:
        handle.write(encode_image(path, image, params))


def write_raf(out, seed, sizes, pool=None):
    """raf/basic/: EmoLabel/list_patition_label.txt, Image/aligned/*_aligned.jpg (100 x 100) and
    Image/original/*.jpg (128 x 128); raf_mixtures.csv."""
    canonical_to_raf = {canonical: raf + 1 for raf, canonical in enumerate(RAF_TO_CANONICAL)}
    lines, rows = [], []
    with atomic_path(os.path.join(out, "raf"), is_dir=True) as tmp:
        for sub in ("EmoLabel", os.path.join("Image", "aligned"), os.path.join("Image", "original")):
            os.makedirs(os.path.join(tmp, "basic", sub))
        for split, digits in (("train", 5), ("test", 4)):
            for index, label, mixture, image in draw_split(seed, "raf", split, sizes[split], 128, False, pool):
                stem = "%s_%0*d" % (split, digits, index + 1)
                write_image(os.path.join(tmp, "basic", "Image", "original", stem + ".jpg"), image,
                            [cv2.IMWRITE_JPEG_QUALITY, 92])
                write_image(os.path.join(tmp, "basic", "Image", "aligned", stem + "_aligned.jpg"),
                            cv2.resize(image, (100, 100), interpolation=cv2.INTER_AREA),
                            [cv2.IMWRITE_JPEG_QUALITY, 92])
                lines.append("%s.jpg %d\n" % (stem, canonical_to_raf[label]))
                rows.append((stem, split, label, mixture))
        with open(os.path.join(tmp, "basic", "EmoLabel", "list_patition_label.txt"), "w") as handle:
            handle.writelines(sorted(lines))
    _write_mixtures(os.path.join(out, "raf_mixtures.csv"), rows)


def write_sfew(out, seed, sizes, pool=None):
    """sfew/{Train/Train,Val/Val}_Aligned_Faces/<Class>/*.png (100 x 100); sfew_mixtures.csv."""
    rows = []
    with atomic_path(os.path.join(out, "sfew"), is_dir=True) as tmp:
        for split, top in (("train", "Train"), ("val", "Val")):
            for index, label, mixture, image in draw_split(seed, "sfew", split, sizes[split], 100, False, pool):
                folder = os.path.join(tmp, top, top + "_Aligned_Faces", SFEW_FOLDERS[label])
                os.makedirs(folder, exist_ok=True)
                stem = "Synth%s_%09d_%08d" % (top, index // 8, index % 8 + 1)
                write_image(os.path.join(folder, stem + ".png"), image)
                rows.append(("%s/%s" % (SFEW_FOLDERS[label], stem), split, label, mixture))
    _write_mixtures(os.path.join(out, "sfew_mixtures.csv"), rows)


def small_split(n):
    """RAF and SFEW layouts hold a tenth of the FER-2013 split sizes (at least one image per class)."""
    return max(NUM_CLASSES, n // 10)


def split_sizes(train, val, test):
    """{layout: {split: images}} of the set write_synthetic_set writes (FER+ votes on FER-2013's rows)."""
    return {"fer2013": {"train": train, "val": val, "test": test},
            "raf": {"train": small_split(train), "test": small_split(test)},
            "sfew": {"train": small_split(train), "val": small_split(val)}}


def shared_persons(synthetic, faces_seed, identities):
    """(faces, of all) of the expression set write_synthetic_set(**synthetic) writes that show one of
    the pretraining set's first ``identities`` persons (seed ``faces_seed``): 0 by construction
    (POPULATIONS), counted person by person for the report."""
    pretraining = {portrait_person(faces_seed, who) for who in range(identities)}
    sizes = split_sizes(synthetic["train"], synthetic["val"], synthetic["test"])
    layouts = {"fer2013" if layout == "ferplus" else layout for layout in synthetic.get("layouts", LAYOUTS)}
    persons = [expression_person(synthetic.get("seed", 0), _STREAMS[layout, split], index)
               for layout in sorted(layouts) for split, n in sizes[layout].items() for index in range(n)]
    return sum(who in pretraining for who in persons), len(persons)


@contextlib.contextmanager
def drawing_pool(workers=None):
    """The processes to draw faces on, ``workers`` of them (default: all cores), for draw_split and
    draw_portraits; None (draw here) for one."""
    workers = workers or default_workers()
    if workers == 1:
        yield None
        return
    with multiprocessing.Pool(workers, initializer=single_threaded_opencv) as pool:
        yield pool


def write_synthetic_set(out, seed=0, train=3000, val=600, test=600, layouts=LAYOUTS, workers=None):
    """Write the synthetic set's layouts into ``out``, drawing on ``workers`` processes (default:
    all cores); returns {layout: path written}. Each file and folder is written whole or not at all
    (a full disk: errors.DiskFull naming it), fer2013.csv last: a set that has it is complete."""
    unknown = sorted(set(layouts) - set(LAYOUTS))
    if unknown:
        raise ValueError("unknown layouts %s (known: %s)" % (", ".join(unknown), ", ".join(LAYOUTS)))
    os.makedirs(out, exist_ok=True)
    fer2013 = "fer2013" in layouts or "ferplus" in layouts       # FER+ votes are on fer2013.csv's rows
    with drawing_pool(workers) as pool:
        # fer2013.csv last: the pipeline takes a set with it as written, so one cut short (a full
        # disk, a kill) is written again by the rerun.
        sizes = split_sizes(train, val, test)
        if "raf" in layouts:
            write_raf(out, seed, sizes["raf"], pool)
        if "sfew" in layouts:
            write_sfew(out, seed, sizes["sfew"], pool)
        if fer2013:
            write_fer2013(out, seed, sizes["fer2013"], pool, ferplus="ferplus" in layouts)
    paths = {"fer2013": "fer2013.csv", "ferplus": "fer2013new.csv", "raf": os.path.join("raf", "basic"), "sfew": "sfew"}
    return {layout: os.path.join(out, path) for layout, path in paths.items()
            if layout in layouts or (layout == "fer2013" and fer2013)}


def write_video(path, frames=300, fps=25.0, size=(640, 480), face=200, seed=0):
    """An MP4 (any container OpenCV writes, by the extension) of one synthetic face gliding across a
    plain scene, its expression cycling through the seven classes once a second; for trying and
    testing video prediction. Returns the face's (x, y, side) in each frame."""
    width, height = size
    who = person(seed, "video", 0)
    faces = [render(np.random.default_rng(seed * 7 + k), np.eye(NUM_CLASSES)[k], face, False, who)
             for k in range(NUM_CLASSES)]
    travel = max(1, width - face)
    boxes = []
    with atomic_path(path, keep_extension=True) as tmp:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise InputError("%s: OpenCV cannot write this video format (try .mp4 or .avi)" % path)
        for index in range(frames):
            x = (3 * index) % (2 * travel)
            x = x if x < travel else 2 * travel - x                         # back and forth
            y = (height - face) // 2
            frame = np.full((height, width, 3), 90, np.uint8)
            frame[y:y + face, x:x + face] = faces[int(index // fps) % NUM_CLASSES]
            writer.write(frame)
            boxes.append((x, y, face))
        writer.release()
        check_room(tmp)         # VideoWriter reports no failed write: on a full disk the video is cut short
    return boxes
