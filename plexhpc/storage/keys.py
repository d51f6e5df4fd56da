"""The deployment's state-signing key: 32 random bytes in a private file.

Checkpoints and workflow steps are signed with it (:func:`plexhpc.storage.codec.seal`), so
a state file that was modified, or copied from another deployment, is refused at load.
That only holds while the key is kept apart from the state: a key inside the state
directory would be copied (or replaced) together with the state it signs, so it is
refused.

The file is ``$PLEXHPC_STATE_KEY_FILE`` or ``~/.config/plexhpc/state.key``, created on
first use with mode 0600 in a 0700 directory. An existing key file is refused unless it
is a regular file owned by the user running the job that no other user may write
(whoever can replace the key can forge every checkpoint and timer); one that others
may read draws a warning (they could forge state they can also write).
:func:`check_private_file` applies the same rules to other secrets (the metrics
token). When the key is missing but state signed with a key exists, it is not made
anew: see :mod:`plexhpc.storage.durable`. Creation is atomic and exclusive: the key
is written to a temporary file and hard-linked into place, so a reader never sees a
partial key, and when several ranks race to create it they all end with the same one.
"""

from __future__ import annotations

import os
import time

from ..errors import StateError
from ..log import get_logger

__all__ = ["load_or_create_key", "default_key_path", "check_private_file", "KEY_LEN",
           "KEY_FILE_ENV"]

log = get_logger("state")

KEY_LEN = 32
KEY_FILE_ENV = "PLEXHPC_STATE_KEY_FILE"


def default_key_path() -> str:
    """``$PLEXHPC_STATE_KEY_FILE``, else ``~/.config/plexhpc/state.key``."""
    return os.environ.get(KEY_FILE_ENV) or os.path.join(
        os.path.expanduser("~"), ".config", "plexhpc", "state.key")


def _inside(path: str, directory: str) -> bool:
    path = os.path.realpath(path)
    directory = os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def load_or_create_key(path: str | None = None, *, state_dir: str | None = None) -> bytes:
    """Return the signing key stored at ``path`` (see the module doc for the default),
    creating it if it does not exist yet.

    Raises :class:`~plexhpc.errors.StateError` if the key file lies inside
    ``state_dir``, holds anything but exactly 32 bytes, or cannot be read or created."""
    path = os.path.abspath(os.path.expanduser(path or default_key_path()))
    if state_dir is not None and _inside(path, state_dir):
        raise StateError(
            f"the state key file {path} lies inside the state directory {state_dir}: "
            f"a copy of the state would carry the key that vouches for it. Keep the key "
            f"outside, e.g. set {KEY_FILE_ENV}=~/.config/plexhpc/state.key")
    key = _read(path)
    if key is not None:
        return key
    return _create(path)


def check_private_file(st: os.stat_result, path: str, what: str) -> None:
    """Refuse a secret file (``what``: "state key", "metrics token"...) that is not a
    regular file, belongs to another user, or that group or others may write; warn
    if they may read it. Raises StateError saying how to fix it."""
    from stat import S_IMODE, S_ISREG
    if not S_ISREG(st.st_mode):
        raise StateError(f"the {what} file {path} is not a regular file; point it at a "
                         f"file holding only the {what}")
    if st.st_uid != os.geteuid():
        raise StateError(f"the {what} file {path} belongs to another user (uid "
                         f"{st.st_uid}), who could replace it; use a file of your own "
                         f"(e.g. copy it, then chmod 600 it)")
    mode = S_IMODE(st.st_mode)
    if mode & 0o022:
        raise StateError(f"the {what} file {path} may be written by other users (mode "
                         f"{mode:o}), who could replace it; run chmod 600 {path}")
    if mode & 0o044:
        log.warning("the %s file %s may be read by other users (mode %o); run chmod 600 "
                    "%s", what, path, mode, path)


def _read(path: str, *, wait_s: float = 0.0) -> bytes | None:
    """The key at ``path``, or None if there is no file. A short file is waited for up
    to ``wait_s`` (another process may be writing it without hard links), then refused."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with open(path, "rb") as f:
                data = f.read(KEY_LEN + 1)
                st = os.fstat(f.fileno())
                size = st.st_size
        except (FileNotFoundError, NotADirectoryError):
            return None  # creating it will say what is in the way
        except IsADirectoryError:
            raise StateError(f"the state key path {path} is a directory; point "
                             f"{KEY_FILE_ENV} at a file") from None
        except OSError as exc:
            raise StateError(f"cannot read the state key {path}: {exc}") from None
        if len(data) == KEY_LEN:
            check_private_file(st, path, "state key")
            return data
        if len(data) < KEY_LEN and time.monotonic() < deadline:
            time.sleep(0.01)
            continue
        raise StateError(
            f"the state key file {path} holds {max(size, len(data))} bytes, a plexhpc "
            f"state key is exactly {KEY_LEN}: it is not a state key, or "
            f"was damaged. Restore it from a backup; or move it away to have a new one "
            f"made (checkpoints signed with the old key will then be refused)")


def _create(path: str) -> bytes:
    parent = os.path.dirname(path)
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
            os.chmod(parent, 0o700)
    except OSError as exc:
        raise StateError(f"cannot create the directory {parent} for the state key: "
                         f"{exc}") from None
    key = os.urandom(KEY_LEN)
    tmp = f"{path}.tmp.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and fails if another process got there first
        except FileExistsError:
            pass
        except OSError:
            # a filesystem without hard links: exclusive create of the file itself
            _create_in_place(path, key)
    except OSError as exc:
        raise StateError(f"cannot create the state key {path}: {exc}") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _fsync_dir(parent)
    winner = _read(path, wait_s=2.0)  # ours, or the key of a process that won the race
    if winner is None:
        raise StateError(f"the state key {path} vanished right after it was created; "
                         f"is another process deleting it?")
    return winner


def _fsync_dir(directory: str) -> None:
    """Make the new directory entry durable (best effort: not every filesystem can)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_in_place(path: str, key: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
