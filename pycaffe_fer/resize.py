"""The one resize every image goes through on its way into a net: the LMDB builder's and prediction's.

Kept apart from lmdb_build so that prediction without Caffe (the onnx backend) imports no LMDB code.
"""
import cv2


def fit(image, size):
    """``image`` resized to size x size, bilinear as Caffe's convert_imageset does, except that a
    shrink by 2x or more averages areas: bilinear would skip pixels there and alias. (Area averaging
    costs six times more, for no visible gain at milder shrinks.)"""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    far = min(height, width) >= 2 * size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if far else cv2.INTER_LINEAR)
