"""Write files and directories under a temporary sibling name and rename when complete.

An interrupted or failed write then never leaves a half-written result at the target path.
"""
import contextlib
import os
import shutil
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target, is_dir=False, replace=True, keep_extension=False):
    """Yield a temporary sibling path of ``target``; on success rename it onto ``target``.

    The caller creates the file (or, with ``is_dir``, fills the already created directory).
    On any exception the temporary path is removed and ``target`` is left untouched. With
    ``replace=False`` an existing target raises FileExistsError before anything is written.
    ``keep_extension`` gives the temporary file the target's extension, for writers that pick
    the format by it (OpenCV's VideoWriter).
    """
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    if not replace and os.path.lexists(target):
        raise FileExistsError(target)
    base = "." + os.path.basename(target) + ".tmp-"
    if is_dir:
        tmp = tempfile.mkdtemp(prefix=base, dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=base, suffix=os.path.splitext(target)[1] if keep_extension else "", dir=parent)
        os.close(fd)
    try:
        yield tmp
        # mkstemp/mkdtemp create 0600/0700: give the result the usual mode.
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_umask())
        if is_dir and os.path.isdir(target):
            # A directory cannot be renamed over a non-empty one: move the old one aside first.
            old = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".old-", dir=parent)
            os.rename(target, os.path.join(old, "x"))
            os.rename(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)
        raise
