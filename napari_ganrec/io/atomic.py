"""Output files: checking that a path may be written, and atomic writes (a temporary file beside
the target, renamed onto it on success), including the clean-up of a killed writer's temporary files.

The one place of the package that renames files (``os.replace``) or creates temporary files."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import TomoFormatError

__all__ = [
    "existing_file",
    "check_output_path",
    "remove_stale_temps",
    "atomic_paths",
    "atomic_write",
    "atomic_write_bytes",
]


def existing_file(path) -> Path:
    """``path`` as a Path, or a clear error when it is missing or empty (0 bytes).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    TomoFormatError
        ``path`` is empty.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise TomoFormatError(path, "the file is empty (0 bytes)")
    return path


def check_output_path(path, overwrite: bool = False) -> Path:
    """Check that ``path`` may be written: its folder exists and is writable, and it does not
    exist unless ``overwrite``.

    Raises
    ------
    FileExistsError, PermissionError, FileNotFoundError
        With a message naming the path.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {path}: the folder {folder} is read-only")
    return path


# temporary files: ".NAME.tmp-HOST-PID-RANDOM.part" beside the target, so that a later run can tell
# those of a process that died (kill -9, power cut) from those of one still writing
_TMP_MARK = ".tmp-"
_TMP_SUFFIX = ".part"


def _host() -> str:
    return socket.gethostname().replace("-", "_").replace(".", "_") or "host"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}{_TMP_MARK}{_host()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return True
    return True


def remove_stale_temps(target) -> list[Path]:
    """Remove the temporary files that a killed writer of ``target`` left beside it.

    A temporary file ``.NAME.tmp-HOST-PID-RANDOM.part`` is stale when HOST is this machine and no
    process PID runs here any more; ``.NAME.tmp-PID`` is the name of earlier versions (same rule,
    this host assumed). Files of live processes or of other hosts (a shared file system) are kept.

    Returns
    -------
    list of Path
        The files removed.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    prefix = f".{target.name}{_TMP_MARK}"
    removed: list[Path] = []
    try:
        candidates = [c for c in folder.iterdir() if c.name.startswith(prefix)]
    except OSError:
        return removed
    host = _host()
    for cand in candidates:
        rest = cand.name[len(prefix):]
        if rest.endswith(_TMP_SUFFIX):  # HOST-PID-RANDOM.part
            parts = rest[: -len(_TMP_SUFFIX)].split("-")
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            pid = int(parts[1])
        elif rest.isdigit():  # the older ".NAME.tmp-PID"
            pid = int(rest)
        else:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            if cand.is_dir():
                shutil.rmtree(cand)
            else:
                cand.unlink()
            removed.append(cand)
        except FileNotFoundError:
            pass
        except OSError as exc:
            warnings.warn(f"cannot remove the stale temporary file {cand}: {exc}", UserWarning, stacklevel=2)
    return removed


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (and restore it at once)
    os.umask(mask)
    return mask


def _give_user_mode(path: Path) -> None:
    """Temporary files are created 0600; the final file gets what ``open()`` would give: 0666 less
    the umask."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_paths(*paths, overwrite: bool = False) -> Iterator[list[Path]]:
    """Write files atomically: yields temporary paths beside the targets; on success they are
    renamed onto the targets (``os.replace``), on any error they are removed and the targets are
    left untouched.

    The written files get the user's umask (as a plain ``open()`` would give them). Temporary
    files that a killed earlier writer left beside a target are removed first
    (:func:`remove_stale_temps`).

    Raises
    ------
    FileExistsError
        A target exists and ``overwrite`` is false.
    PermissionError
        The folder is read-only.
    OSError
        Writing failed (e.g. the disk is full); the message names the target.
    """
    targets = [check_output_path(p, overwrite) for p in paths]
    temps: list[Path] = []
    try:
        for t in targets:
            remove_stale_temps(t)
            fd, name = tempfile.mkstemp(prefix=_temp_prefix(t), suffix=_TMP_SUFFIX, dir=t.parent)
            os.close(fd)
            temps.append(Path(name))
        yield temps
        for tmp in temps:
            if tmp.is_file():
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                _give_user_mode(tmp)
        for tmp, t in zip(temps, targets):
            os.replace(tmp, t)
    except PermissionError as exc:
        raise PermissionError(f"cannot write {targets[0]}: {exc.strerror or exc}") from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OSError(
                errno.ENOSPC, f"cannot write {targets[0]}: no space left on device; "
                "nothing was written at the target"
            ) from exc
        raise
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def atomic_write(path, write: Callable[[Path], Any], *, overwrite: bool = False) -> Path:
    """Write one file atomically: ``write(tmp)`` fills a temporary file beside ``path``, which then
    replaces it (see :func:`atomic_paths`).

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_paths(path, overwrite=overwrite) as (tmp,):
        write(tmp)
    return Path(path)


def atomic_write_bytes(path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (bookkeeping files: replaced by default)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write, overwrite=overwrite)
