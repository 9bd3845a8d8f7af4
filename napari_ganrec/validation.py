"""Validation of user input: angles, sinograms, centre, rows, seed, weights and output arrays.

Each ``validate_*`` function raises a :class:`ValueError` that names the argument and says what to
give instead. Re-exported by :mod:`napari_ganrec.geometry`, their former home."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

__all__ = [
    "validate_angles",
    "validate_sinogram",
    "validate_center",
    "validate_rows",
    "validate_seed",
    "validate_weight",
    "validate_out",
    "looks_like_radians",
    "MAX_SEED",
]


def looks_like_radians(angles) -> bool:
    """Whether angles (meant as degrees) look like radians: more than two, not all equal, and all
    within +-2*pi."""
    a = np.asarray(angles, dtype=np.float64).ravel()
    return bool(a.size > 2 and np.ptp(a) > 0 and np.max(np.abs(a)) <= 2 * np.pi + 1e-6)


def validate_angles(
    angles,
    n_angles: int | None = None,
    name: str = "angles",
    warn_radians: bool = True,
    *,
    n_det: int | None = None,
    tomographic: bool = False,
) -> np.ndarray:
    """Check projection angles (degrees) and return them as float64.

    Parameters
    ----------
    angles : array_like
        One angle per projection, in degrees.
    n_angles : int, optional
        The number of projections they must match.
    name : str
        The argument's name in messages.
    warn_radians : bool
        Warn when the angles look like radians.
    n_det : int, optional
        The detector width: when the angle count matches it instead of ``n_angles``, the message
        says the sinogram looks transposed.
    tomographic : bool
        The angles are to reconstruct from: at least two, and not all equal (a geometry for a
        forward projection may have one).

    Raises
    ------
    ValueError
        When angles are not a 1-D finite array, are empty, their count differs from ``n_angles``,
        or (``tomographic``) there is a single angle or all are equal.

    Warns
    -----
    UserWarning
        When the angles look like radians (all within +-2*pi while more than two are given), and
        (``tomographic``) when some angle is repeated.
    """
    if angles is None:
        raise ValueError(f"{name} are required: one angle per projection, in degrees; got None")
    try:
        a = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D array of numbers in degrees: {exc}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one angle per projection), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: at least one projection angle is needed")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if n_angles is not None and a.size != n_angles:
        if n_det is not None and a.size == n_det and n_det != n_angles:
            raise ValueError(
                f"{name} has {a.size} values, as many as the sinogram's last axis, but the sinogram has "
                f"{n_angles} projections (rows): the sinogram looks transposed; it must be "
                "(n_angles, n_det) (pass sinogram.T, or swap the last two axes of a stack)"
            )
        raise ValueError(
            f"{name} has {a.size} values but the sinogram has {n_angles} projections (rows); "
            "give one angle per projection"
        )
    if tomographic:
        if a.size < 2:
            raise ValueError(
                f"{name} holds a single projection angle ({a[0]:g} degrees): a reconstruction needs "
                "projections at two or more angles"
            )
        if np.ptp(a) == 0:
            raise ValueError(
                f"all {a.size} {name} are equal ({a[0]:g} degrees): a reconstruction needs projections "
                "at different angles; check the angle file or range (e.g. --angles 0:180)"
            )
        uniq, counts = np.unique(a, return_counts=True)
        if uniq.size < a.size:
            first = float(uniq[np.argmax(counts > 1)])
            warnings.warn(
                f"{name} repeat {a.size - uniq.size} value(s) (e.g. {first:g} degrees "
                f"{int(counts.max())} times); repeated projections are used as given, but check the "
                "angle file if this is not intended",
                UserWarning,
                stacklevel=3,
            )
    if warn_radians and looks_like_radians(a):
        warnings.warn(
            f"{name} span {np.ptp(a):.3g} and never exceed 2*pi: they look like radians, but "
            "napari-ganrec expects degrees (use numpy.rad2deg)",
            UserWarning,
            stacklevel=3,
        )
    return a


def validate_sinogram(sinogram, name: str = "sinogram") -> np.ndarray:
    """Check a sinogram ``(n_angles, n_det)`` or stack ``(n_slices, n_angles, n_det)``.

    Returns a C-contiguous float32 array with the same shape.

    Raises
    ------
    ValueError
        Wrong number of dimensions, empty axes, a detector narrower than 2 pixels, or NaN/inf.
    """
    if sinogram is None:
        raise ValueError(f"{name} is None; give an array of line integrals (n_angles, n_det)")
    if isinstance(sinogram, (str, bytes)) or hasattr(sinogram, "__fspath__"):
        raise ValueError(
            f"{name} must be an array, got the path {str(sinogram)!r}; read files with "
            "napari_ganrec.io.read_tomo(path).sinograms()"
        )
    try:
        s = np.asarray(sinogram)
    except Exception as exc:  # noqa: BLE001 - anything numpy cannot read is a bad argument
        raise ValueError(f"{name} cannot be read as an array: {exc}") from None
    if s.dtype == object or not (np.issubdtype(s.dtype, np.number) or s.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    if np.iscomplexobj(s):
        raise ValueError(f"{name} must be real, got complex values")
    if s.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be 2-D (n_angles, n_det) or 3-D (n_slices, n_angles, n_det), "
            f"got shape {s.shape}"
        )
    if s.size == 0 or 0 in s.shape:
        raise ValueError(f"{name} is empty (shape {s.shape})")
    if s.shape[-1] < 2:
        raise ValueError(f"{name} has a detector of {s.shape[-1]} pixel(s); at least 2 are needed")
    if s.dtype.kind in "iub":
        warnings.warn(
            f"{name} holds integers or booleans ({s.dtype}), but line integrals (after -log) are expected; raw "
            "counts need flat/dark correction and -log first (napari_ganrec.preprocess, or read the file "
            "with napari_ganrec.io.read_tomo and use its sinograms())",
            UserWarning,
            stacklevel=3,
        )
    s = np.ascontiguousarray(s, dtype=np.float32)
    if not np.all(np.isfinite(s)):
        bad = int(np.size(s) - np.count_nonzero(np.isfinite(s)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s); clean the data first "
            "(e.g. flat/dark correction with a floor before -log)"
        )
    return s


MAX_SEED = 2**63 - 1


def validate_seed(seed, name: str = "seed") -> int:
    """Check a random seed: an integer from 0 to ``2**63 - 1``.

    ``None`` is refused rather than drawn at random: the API returns no record of a drawn seed,
    so the run could not be repeated. Draw one yourself and keep it
    (``secrets.randbelow(2**63)``), or ask the command line for ``--seed random`` (which records
    the drawn seed in the output's metadata).

    Raises
    ------
    ValueError
        ``None``, a bool, a non-integer (``1.5``), a negative number or one above ``2**63 - 1``.
    """
    if seed is None:
        raise ValueError(
            f"{name} must be an integer (0 to 2**63-1), got None; runs are reproducible from their seed, "
            "so draw a random one and keep it: seed=secrets.randbelow(2**63) (command line: --seed random)"
        )
    if isinstance(seed, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer (0 to 2**63-1), got {seed!r}")
    if not isinstance(seed, numbers.Integral):
        if isinstance(seed, numbers.Real) and np.isfinite(seed) and float(seed).is_integer():
            seed = int(seed)
        else:
            raise ValueError(f"{name} must be an integer (0 to 2**63-1), got {seed!r}")
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer from 0 to 2**63-1 = {MAX_SEED}, got {seed}")
    return seed


def validate_weight(value, name: str = "tv_weight", allow_none: bool = True,
                    allow_auto: bool = True) -> float | str | None:
    """Check a regularisation weight: a finite number >= 0 (or ``None`` for the default, or
    ``"auto"``: chosen from the data's noise by the stages that can, see :mod:`napari_ganrec.noise`).

    Raises
    ------
    ValueError
        Not a number, NaN, infinite or negative.
    """
    if value is None and allow_none:
        return None
    if allow_auto and isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        also = " or 'auto'" if allow_auto else ""
        raise ValueError(f"{name} must be a finite number >= 0{also}, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def validate_center(center, n_det: int, name: str = "center", automatic: bool = False) -> float | None:
    """Check a centre of rotation (detector pixels); ``None`` stays ``None`` (= ``n_det / 2``).

    Parameters
    ----------
    center : float or None
        The centre, in pixels from the detector's left edge.
    n_det : int
        Detector width in pixels.
    name : str
        The argument's name in messages.
    automatic : bool
        The centre was found automatically (not given by the user): the message says so, and
        what to check.

    Raises
    ------
    ValueError
        Not a number, NaN or infinite, or outside the detector ``[0, n_det]``.
    """
    if center is None:
        return None
    if isinstance(center, (bool, np.bool_)) or not isinstance(center, numbers.Real):
        try:
            c = float(center)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number of pixels (or None for n_det/2), got {center!r}") from None
    else:
        c = float(center)
    if automatic and not (np.isfinite(c) and 0.0 <= c <= n_det):
        raise ValueError(
            f"the automatic centre of rotation, {c:.1f} px, lies outside the detector (0 to {n_det} px): the "
            "search found no consistent centre. This usually means wrong angles (radians given as degrees? "
            "a range that does not match the scan?) or a sample leaving the field of view; check the angles, "
            "or give the centre yourself (--center C on the command line, center= in Python)"
        )
    if np.isnan(c):
        raise ValueError(
            f"{name} is NaN; give a number of pixels (the middle of the detector is {n_det / 2:g})"
        )
    if not np.isfinite(c) or not (0.0 <= c <= n_det):
        raise ValueError(f"{name} must lie on the detector (0 to {n_det} pixels), got {center!r}")
    return c


def validate_rows(rows, n_slices: int, name: str = "rows") -> tuple[int, int]:
    """Check a contiguous range of slices against the ``n_slices`` available: ``(start, stop)``.

    Parameters
    ----------
    rows : None, slice or (start, stop)
        ``None`` is every slice. Bounds are integers with ``0 <= start < stop <= n_slices``; a slice
        may leave either bound out (``slice(2, None)``). Negative bounds and bounds past the data are
        refused rather than clipped, so the result always has ``stop - start`` slices.

    Raises
    ------
    ValueError
        A step other than 1, non-integer bounds, or a range that is empty or leaves the data.
    """
    n_slices = int(n_slices)
    if n_slices < 1:
        raise ValueError(f"the data hold no slice (0 rows), so {name} cannot select any; check the input's shape")
    if rows is None:
        return 0, n_slices
    if isinstance(rows, slice):
        if rows.step not in (None, 1):
            raise ValueError(f"{name} must be a contiguous range (step 1), got {rows}")
        bounds = (rows.start, rows.stop)
    elif isinstance(rows, (tuple, list)) and len(rows) == 2:
        bounds = tuple(rows)
    else:
        raise ValueError(f"{name} must be None, a slice or (start, stop), got {rows!r}")
    for b in bounds:
        if b is not None and (isinstance(b, (bool, np.bool_)) or not isinstance(b, numbers.Integral)):
            raise ValueError(f"{name} bounds must be integers, got {rows!r}")
    start = 0 if bounds[0] is None else int(bounds[0])
    stop = n_slices if bounds[1] is None else int(bounds[1])
    if 0 <= start and stop <= n_slices and stop <= start:
        raise ValueError(f"{name} {start}:{stop} selects no slice: give start < stop (of the {n_slices} available)")
    if not 0 <= start < stop <= n_slices:
        raise ValueError(
            f"{name} {start}:{stop} is outside the {n_slices} slice(s) of the data: give 0 <= start < stop <= "
            f"{n_slices} (negative or past-the-end bounds are not clipped)"
        )
    return start, stop


def validate_out(out, name: str = "out") -> None:
    """Check an output array given by the caller: ``None``, or one that holds floats (an integer
    array would truncate the reconstruction silently).

    Raises
    ------
    ValueError
        Not array-like, or not of a floating-point type.
    """
    if out is None:
        return
    dtype = getattr(out, "dtype", None)
    if dtype is None or not hasattr(out, "shape") or not hasattr(out, "__setitem__"):
        raise ValueError(f"{name} must be a writable array (numpy, memory map, Zarr), got {type(out).__name__}")
    if np.dtype(dtype).kind != "f":
        raise ValueError(
            f"{name} holds {np.dtype(dtype)}, which would truncate the reconstruction; give a float32 array"
        )
