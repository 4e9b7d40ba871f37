"""One writer per run folder: an advisory lock on ``RUN/.lock``.

``egoasl train`` holds the lock for its whole call, and ``egoasl predict --split`` while it
writes into the run's ``predictions/`` folder, so a second process writing into the same
folder is refused with a message naming the holder instead of interleaving checkpoints.
The lock is ``flock`` on an open file: the kernel releases it when the holding process ends,
however it ends (``kill -9`` included), so a crashed run never leaves a stuck lock. The file
itself stays; its text (the holder's pid and command) is only for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from egoasl.errors import EgoaslError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: str | Path, purpose: str) -> Iterator[Path]:
    """Hold the lock of ``run_dir`` (created if needed) for the ``with`` block.

    Args:
        run_dir: the run folder.
        purpose: what the holder does (``"egoasl train"``), shown to a process that is refused.

    Raises:
        EgoaslError: another process holds the lock.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise EgoaslError(f"{path}: cannot open the run folder's lock file ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", errors="replace").strip() or "another process"
            raise EgoaslError(
                f"{run_dir}: the run folder is in use by {holder}; wait until it ends, or use another run "
                f"folder (the lock is {path}; it is released when that process ends, even if it is killed)"
            ) from None
        except OSError as exc:  # a file system without locks (some network mounts)
            warnings.warn(f"{path}: the run folder cannot be locked ({exc.strerror or exc}); nothing stops a "
                          "second process from writing into it", stacklevel=3)
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} ({purpose})\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
