"""The canonical expression classes, in the paper's (and FER-2013's) order, and their synonyms."""

# Index i of each tuple is canonical label i.
CLASSES = ("AN", "DI", "FE", "HA", "SA", "SU", "NE")
CLASS_NAMES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
NUM_CLASSES = len(CLASSES)

# Folder and column names seen in the wild (SFEW folders, FER+ columns, Kaggle repackagings),
# lower-cased, mapped to the canonical label.
_SYNONYMS = {
    0: ("an", "anger", "angry", "mad"),
    1: ("di", "disgust", "disgusted", "disgusting"),
    2: ("fe", "fear", "fearful", "afraid", "scared"),
    3: ("ha", "happiness", "happy", "joy", "smile"),
    4: ("sa", "sadness", "sad", "sorrow"),
    5: ("su", "surprise", "surprised"),
    6: ("ne", "neutral", "calm"),
}
_BY_NAME = {name: label for label, names in _SYNONYMS.items() for name in names}


def label_from_name(name):
    """Canonical label of a class name or synonym (case-insensitive); None when unknown."""
    return _BY_NAME.get(name.strip().lower())
