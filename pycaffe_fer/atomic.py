"""Write files and directories under a temporary sibling name and rename when complete.

An interrupted or failed write then never leaves a half-written result at the target path; a
write that finds the disk full is reported in one line naming the target (errors.DiskFull).
"""
import contextlib
import os
import shutil
import tempfile

from .errors import DiskFull, is_disk_full


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
    the format by it (OpenCV's VideoWriter). A full disk (OSError ENOSPC or EDQUOT, from writing
    the temporary path or with no file named) raises DiskFull naming ``target`` once the
    temporary path is gone.
    """
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    if not replace and os.path.lexists(target):
        raise FileExistsError(target)
    prefix = "." + os.path.basename(target) + ".tmp-"
    tmp = None
    try:
        if is_dir:
            tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
        else:
            fd, tmp = tempfile.mkstemp(prefix=prefix, dir=parent,
                                       suffix=os.path.splitext(target)[1] if keep_extension else "")
            os.close(fd)
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
    except BaseException as error:
        if tmp and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp and os.path.lexists(tmp):
            os.remove(tmp)
        # A failure of this write (another atomic write in the same block reports its own).
        if is_disk_full(error) and (error.filename is None or str(error.filename).startswith(os.path.join(parent, prefix))):
            raise DiskFull(target) from error
        raise


def append_whole(path, text):
    """Append ``text`` to the file ``path`` whole or not at all: a write that fails is cut back off
    (a full disk: DiskFull naming ``path``), so a log or CSV never ends in half a line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    start = os.fstat(fd).st_size
    try:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
    except OSError as error:
        os.ftruncate(fd, start)
        if is_disk_full(error):
            raise DiskFull(path) from error
        raise
    finally:
        os.close(fd)
