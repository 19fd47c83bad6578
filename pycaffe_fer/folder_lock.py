"""One process at a time in a folder: an experiment (Experiment.run) or a run folder (training.train).

The lock is the kernel's (flock) on a lock file in the folder, so a process killed with SIGKILL
releases it as it dies, and the next process takes the folder over without being told. The file
also records who holds it (pid, host, command line, since when), for the one line a second process
gets, and so that a takeover can say whose lock it was: a holder that ends cleanly empties the file,
so a record found by a process that got the lock is the record of one that was killed.

- Processes forked by the holder (multiprocessing's workers) inherit the lock and hold it until they
  end too: the folder is free only when nothing the holder started still writes in it. Processes
  it starts with exec (training runs) do not inherit it: the local executor ends them with it
  (tasks.end_with), and each holds its own run folder's lock.
- On NFS the Linux client passes flock to the server as a lock on the whole file, which every
  client sees (NFSv4, or v3 with lockd), so a driver on one login node stops a second on another,
  and a SLURM task on a compute node stops a local run of the same run folder. A file system that
  takes no locks at all (Lustre mounted without -o flock) is said so in one line, and the work goes
  on unguarded; one whose locks are local to each host (NFS mounted with local_lock or nolock)
  stops a second process on the same host only.
- The file is never removed: a process that opened it while the holder released it would lock a
  file no longer in the folder, beside a newcomer locking the new one.
"""
import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import time

from .errors import DiskFull, InputError, is_disk_full

# A file system without locks answers flock with one of these.
NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
# A holder writes its record right after it gets the lock: a reader that finds the file empty
# looks again for this long before calling the holder unknown.
RECORD_WAIT_SECONDS = 2.0


class FolderInUse(InputError):
    """Another live process holds the folder's lock."""

    def __init__(self, folder, holder):
        ended = holder and holder.get("host") == socket.gethostname() and not _alive(holder.get("pid"))
        super().__init__("%s: in use by %s%s: wait for it to end, or stop it" % (
            folder, describe(holder), ", which has ended: processes it started hold the lock until they end" if ended
            else ""))
        self.folder, self.holder = folder, holder


def describe(holder):
    """The holder record in words: pid, host, since when, command line."""
    if not holder:
        return "another process (it has not written who it is)"
    return "pid %s on %s since %s (%s)" % (holder.get("pid"), holder.get("host"), holder.get("since"),
                                           holder.get("command"))


def _alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError) as error:
        return isinstance(error, PermissionError)      # another user's live process
    return True


def _read(fd):
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0) if size else b""
    try:
        return json.loads(data.decode("utf-8")) if data else None
    except ValueError:
        return {"command": "an unreadable lock record"}


def _read_holder(fd):
    deadline = time.time() + RECORD_WAIT_SECONDS
    holder = _read(fd)
    while holder is None and time.time() < deadline:
        time.sleep(0.05)
        holder = _read(fd)
    return holder


def _write(fd, path, record):
    data = json.dumps(record, sort_keys=True).encode("utf-8")
    try:
        os.ftruncate(fd, 0)
        if os.pwrite(fd, data, 0) != len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    except OSError as error:
        if not is_disk_full(error):
            raise
        os.ftruncate(fd, 0)
        raise DiskFull(path) from error


@contextlib.contextmanager
def hold(path, command, log=print):
    """Hold the lock file ``path`` (its folder is created) while the block runs; ``command`` (a
    string) is recorded as the holder's. FolderInUse when a live process holds it; a lock its holder
    did not release (killed) is taken over, saying so in one line through ``log``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUse(folder, _read_holder(fd))
        except OSError as error:
            if error.errno not in NO_LOCKS:
                raise
            log("warning: %s: this file system takes no locks (%s): a second process in this folder will not be "
                "stopped" % (folder, error.strerror))
        earlier = _read(fd)
        if earlier:
            log("%s: taking over from %s, which ended without releasing it" % (folder, describe(earlier)))
        _write(fd, path, {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                          "since": datetime.datetime.now().isoformat(sep=" ", timespec="seconds")})
        try:
            yield
        finally:
            os.ftruncate(fd, 0)      # released cleanly: nothing for a takeover to report
    finally:
        os.close(fd)                 # the kernel drops the lock with the last descriptor
