"""How many CPU threads a run should use: the cores that are actually free.

torch starts as many threads as the machine has cores. On a shared machine that is too many: when
other processes keep some cores busy, every parallel region of every operator waits for its
slowest thread, which the scheduler has just handed to someone else, and a step can become many
times slower than with one thread. :func:`choose_threads` counts the cores this process may use
(its CPU affinity mask and its cgroup's CPU quota) and subtracts the ones other processes keep busy
(the one-minute load average); :func:`configure_threads` applies that to torch when a run starts
(``napari_ganrec.api`` and the ``reconstruct`` command call it), unless the user has chosen a
count: an explicit ``threads``, ``NAPARI_GANREC_THREADS``, ``OMP_NUM_THREADS``, or a
``torch.set_num_threads`` call of their own are left alone.

Spin-waiting: importing ``napari_ganrec`` sets ``GOMP_SPINCOUNT=10000`` unless ``OMP_WAIT_POLICY``
or ``GOMP_SPINCOUNT`` is set already (it acts only when ``napari_ganrec`` is imported before torch;
otherwise set it yourself). At the end of a parallel region an idle OpenMP thread then spins for
10000 turns (a fraction of a millisecond) and sleeps after that: short enough that a thread the
scheduler has handed to another process does not hold its core for long, long enough to catch the
next operator of a step, which starts microseconds later. Measured on the 2-core development
machine (GANrec, ``method="ganrec"``, 120 x 128 sinogram, 2 threads unless stated, ms per
iteration, medians of 2 runs):

=============================  =========  ===========================  ==================
wait                           quiet      beside 2 busy processes      1 thread (quiet, busy)
=============================  =========  ===========================  ==================
sleep at once (``PASSIVE``)    67-75      79-95                        66-73, 125-130
spin 10000 turns (this)        42-46      104-109                      (same)
libgomp's default (300000)     43-46      239-261
=============================  =========  ===========================  ==================

So the bounded spin keeps the 2-thread speed-up of spinning (0.6x the 1-thread time instead of
1.0x) and a busy machine costs at most 0.85x the 1-thread time there (the target is 1.5x); under
such load :func:`choose_threads` takes 1 thread anyway. An earlier measurement, with the load of
other jobs at 11-16, had 7398 ms with libgomp's default against 279 ms sleeping at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["choose_threads", "configure_threads", "cgroup_cpu_quota", "usable_cpus", "ENV_VAR"]

#: Environment variable that fixes the thread count of runs (a positive integer).
ENV_VAR = "NAPARI_GANREC_THREADS"

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_configured: int | None = None  # the count configure_threads last set (to tell it from a user's)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


_initial: int = _torch_threads()  # torch's count when this module was first imported (its default)


def usable_cpus(affinity: Iterable[int] | None = None) -> int:
    """CPUs this process may run on: the size of ``affinity`` (default: ``os.sched_getaffinity``)."""
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except (AttributeError, OSError):  # not on Linux
            return os.cpu_count() or 1
    return max(1, len(set(affinity)))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(root: str | os.PathLike | None = None, proc_cgroup: str | None = None) -> float | None:
    """The cgroup's CPU limit in cores (``quota / period``), or None when there is none.

    Reads cgroup v2 ``cpu.max`` (``"max 100000"`` or ``"200000 100000"``) or cgroup v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of this process's cgroup (from
    ``/proc/self/cgroup``), under ``root`` (default ``/sys/fs/cgroup``).

    Parameters
    ----------
    root : path, optional
        Where the cgroup file systems are mounted.
    proc_cgroup : str, optional
        The text of ``/proc/self/cgroup`` (read when not given).
    """
    base = Path(root) if root is not None else _CGROUP_ROOT
    text = proc_cgroup if proc_cgroup is not None else (_read(Path("/proc/self/cgroup")) or "")
    v2, v1 = [], []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":
            v2.append(base / rel)
        elif "cpu" in controllers.split(","):
            v1.extend([base / "cpu" / rel, base / "cpu,cpuacct" / rel])
    v2.append(base)
    v1.extend([base / "cpu", base / "cpu,cpuacct"])
    for d in v2:  # the process's own cgroup first, then the root
        raw = _read(d / "cpu.max")
        if raw:
            quota, _, period = raw.partition(" ")
            if quota == "max":
                return None
            try:
                return max(int(quota) / int(period or 100000), 0.01)
            except ValueError:
                return None
    for d in v1:
        quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            try:
                q, p = int(quota), int(period)
            except ValueError:
                return None
            return None if q <= 0 or p <= 0 else max(q / p, 0.01)
    return None


def choose_threads(affinity: Iterable[int] | int | None = None, quota: float | None | str = "read",
                   load: float | None | str = "read", busy_own: float = 0.0) -> int:
    """How many threads a run should use: the usable cores that other processes leave free.

    ``min(len(affinity), ceil(quota))`` cores are usable; of those, the one-minute load average
    (minus ``busy_own``, the part of it that is this process's own work) is taken as busy. The
    result is at least 1.

    Parameters
    ----------
    affinity : iterable of int, or int, optional
        CPU ids this process may run on, or their number (default: ``os.sched_getaffinity``).
    quota : float, None or "read"
        The cgroup CPU quota in cores; None: no quota; ``"read"``: :func:`cgroup_cpu_quota`.
    load : float, None or "read"
        Runnable processes on the machine (load average); None: assume an idle machine;
        ``"read"``: ``os.getloadavg()[0]``.
    busy_own : float
        Threads of this process already counted in ``load`` (e.g. a run that is going on).

    Returns
    -------
    int
        The thread count, ``>= 1``.

    Raises
    ------
    ValueError
        A negative load or quota, or an empty affinity.
    """
    cores = affinity if isinstance(affinity, int) else usable_cpus(affinity)
    if isinstance(affinity, int) and affinity < 1 or cores < 1:
        raise ValueError(f"affinity must name at least one CPU, got {affinity!r}")
    if quota == "read":
        quota = cgroup_cpu_quota()
    if quota is not None:
        if quota <= 0:
            raise ValueError(f"quota must be a positive number of cores or None, got {quota!r}")
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    if load == "read":
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = None
    if load is not None:
        if load < 0:
            raise ValueError(f"load must be >= 0, got {load!r}")
        busy = max(0.0, load - max(0.0, busy_own))
        cores = min(cores, math.floor(cores - busy + 0.5))
    return max(1, int(cores))


def _env_threads() -> int | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_VAR} must be a positive integer, got {raw!r}")
    return value


def configure_threads(threads: int | None = None, **choose) -> int:
    """Set torch's intra-op thread count for a run and return it.

    ``threads`` (or ``NAPARI_GANREC_THREADS``) is applied as given. Otherwise the count is left as
    it is when the user chose one (``OMP_NUM_THREADS`` is set, or torch runs with another count
    than its default, i.e. the count when ``napari_ganrec`` was imported, or the one this function
    set last), and else becomes :func:`choose_threads` (``choose`` is passed on to it).

    Raises
    ------
    ValueError
        ``threads`` or ``NAPARI_GANREC_THREADS`` is not a positive integer.
    """
    global _configured
    import torch

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        torch.set_num_threads(threads)
        _configured = threads
        return threads
    env = _env_threads()
    if env is not None:
        torch.set_num_threads(env)
        _configured = env
        return env
    current = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS") or current not in (_configured, _initial):
        return current  # the user's choice
    n = choose_threads(**choose)
    if n != current:
        torch.set_num_threads(n)
    _configured = n
    return n
