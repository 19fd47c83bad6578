"""The one error type for bad user input (a full disk among them), and the command-line wrapper
that reports it."""
import errno
import os
import shutil
import sys

# The errors of a write that found no room: a full filesystem, or a full quota.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# A write that failed without its errno (LMDB reports a short write as EIO), or with no report at
# all (OpenCV's VideoWriter), is taken for a full disk when less than this is left where it wrote.
NEARLY_FULL_BYTES = 1 << 20


class InputError(Exception):
    """Bad input from the user: the message is one line naming the file, line or record."""


class DiskFull(InputError):
    """A write found no space left. Raised where the write's temporary copy has already been
    removed (pycaffe_fer.atomic), so nothing half-written is left and a rerun after freeing space
    writes it again."""

    def __init__(self, path):
        super().__init__("%s: no space left on device (nothing half-written was kept: free some space and run "
                         "again)" % path)
        self.path = path


def is_disk_full(error):
    return isinstance(error, OSError) and error.errno in NO_SPACE


def check_room(path, needed=0):
    """Raise OSError ENOSPC (pycaffe_fer.atomic reports it as DiskFull naming its target) when less
    than ``needed`` bytes and NEARLY_FULL_BYTES more are free on ``path``'s filesystem: for a write
    whose failure came without its errno, or that reports no failure, or (``needed``) before a
    write that cannot fail gracefully (Caffe aborts on a snapshot it cannot write)."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if shutil.disk_usage(folder).free < needed + NEARLY_FULL_BYTES:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def run_cli(main, argv=None):
    """Run ``main(argv)`` with line-buffered output; an InputError becomes one line on stderr and
    exit status 2."""
    # Every line flushed as printed, as on a terminal: progress reaches a pipe, a log file or a
    # test waiting on it at once, not when a block buffer fills (no PYTHONUNBUFFERED needed).
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    try:
        return main(argv)
    except InputError as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    except OSError as error:
        # A full disk where no atomic write was going on (making a folder, say): its line all the same.
        if not is_disk_full(error):
            raise
        print("error: %s: no space left on device" % (error.filename or "a write"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
