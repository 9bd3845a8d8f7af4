"""How GANrec iterations execute on a device: mixed precision, memory format, compilation, syncs.

None of these options changes what is computed beyond rounding; they are kept apart from
:class:`~napari_ganrec.methods.ganrec.GANrecConfig` (the method) so a warm start, a saved state or a
benchmark row means the same thing with or without them. ``"auto"`` turns on what helps on the
device (``Acceleration.off()`` is the plain float32 path):

=====================  =========================================  ===========================
option                 CUDA (``"auto"``)                           CPU (``"auto"``)
=====================  =========================================  ===========================
``amp``                bfloat16 autocast of the generator when it  off (float32)
                       fits a residual on an initial image (a
                       chain such as ``"rwtv+ganrec"``) and the
                       GPU supports bfloat16; float32 otherwise
``channels_last``      on (NHWC convolutions)                      on (oneDNN's NHWC kernels)
``compile``            off by default (opt-in: ``"on"``, or        off
                       ``"auto"``: on where Triton is importable);
                       compiles the generator and the reweighted
                       TV stage's element-wise updates
``check_every``        25: losses and the finite check are read    1: every iteration
                       on the host once per 25 iterations
``fused_adam``         on                                          on (one pass over the
                                                                   weights, no temporaries)
``cpu_heap``           -                                           on (glibc: freed blocks up
                                                                   to 32 MB are reused, not
                                                                   returned to the system)
=====================  =========================================  ===========================

On MPS every ``"auto"`` is off. What the CPU choices bought, measured on one thread of an AMD
EPYC (GANrec, ``method="ganrec"``, 120 projections; CPU time per iteration, the machine shared): fused Adam
768 -> 580 ms at 256 px (the unfused update over the 25 M weights allocates and reads several
temporaries of each weight matrix), channels-last 580 -> 516 ms at 256 px (oneDNN's NHWC
convolutions), the heap setting about 60 ms at 256 px (without it, every iteration page-faults
in about 100 MB of fresh gradient and activation buffers), and the fully connected layers' own
weight gradient (:class:`~napari_ganrec.methods.networks.Linear`) 457 -> 422 ms at 256 px and 141 -> 120
ms at 128 px. Always on, in the networks and the projector rather than here (in-process A/B on one
thread): one-column projector products as ``torch.mv`` and the discriminator's measured and modelled
sinograms in one batch (the step 0.95x at 128 and 256 px), the convolutions' bias added after the
convolution (the generator's forward and backward pass 0.95x at 256 px) and the wide output layer's
weight blocks held transposed (that layer 14.5 -> 11.7 ms at 256 px). With channels-last on the CPU
(:mod:`~napari_ganrec.methods.cpu_conv`), measured the same way on an Intel Xeon: the generator's
first and last convolutions as one matrix product each, the others with the bias in oneDNN's output
pass and its gradient as one sum, and the discriminator in channels-last: the step 0.94x at 256 px
and 0.96x at 128 px with one thread, 0.97x and 0.98x with two.
None changes what is computed beyond rounding. ``torch.compile`` stays opt-in on the
CPU too: for one 128 px slice it gained nothing (the generator's forward and backward pass 129.5
vs 129.6 ms, after 170 s of compilation).

Why the ``amp`` rule: bfloat16 numerics (measured with forced bf16 on a CPU, 128 px porous
phantom, 0-120 degrees, with the earlier engine) left a generator fitting a residual on a
2000-iteration reweighted-TV image unchanged (SSIM 0.9796 vs 0.9796 after 300 network iterations)
but cost the paper's GANrec, whose whole image comes from the generator, 0.105 (0.854 -> 0.749
after 500 iterations). ``amp="bf16"`` forces it anyway.

The projector (sparse matrix products) always runs in float32. A compilation that fails (no
compiler, an unsupported operation) falls back to eager execution with one warning, and the run
goes on. Compilation is opt-in because it costs tens of seconds per new shape before the first
iteration and its gain on a GPU has not been measured yet (``benchmarks/speed.py`` prints it as
the ``compiled`` execution).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass, fields

import torch

__all__ = ["Acceleration", "ResolvedAcceleration", "Losses", "CompiledOrEager", "resolve_acceleration",
           "EXECUTIONS", "keep_cpu_heap"]

_AMP = ("auto", "off", "bf16")
_SWITCH = ("auto", "off", "on")


@dataclass(frozen=True)
class Acceleration:
    """Execution options of a GANrec run (see the module docstring for what ``"auto"`` picks).

    Attributes
    ----------
    amp : {"auto", "off", "bf16"}
        Mixed precision of the generator's forward and backward pass (bfloat16 autocast; its
        output, the projector and every loss stay float32). ``"auto"``: on CUDA, only for a
        generator that fits a residual on an initial image (a chain such as ``"rwtv+ganrec"``).
    channels_last : {"auto", "off", "on"}
        Channels-last memory format for the generator's convolutions.
    compile : {"off", "on", "auto"}
        ``torch.compile`` the generator and reweighted TV's element-wise updates (default off;
        ``"auto"``: on CUDA when Triton is importable).
    compile_backend : str
        Backend of ``torch.compile`` (``"inductor"``; ``"aot_eager"`` checks the tracing only).
    check_every : int or None
        Iterations between host reads of the losses' finite check (NaN recovery restores the last
        snapshot taken at a clean check). ``None``: 1 on the CPU, 25 on CUDA.
    fused_adam : {"auto", "off", "on"}
        Fused Adam kernels (CUDA and CPU).
    cpu_heap : {"auto", "off", "on"}
        On the CPU with glibc: let freed blocks of up to 32 MB be reused by the next iteration
        instead of being returned to the system and faulted in again (process-wide, from the
        first run on; ``"auto"``: on for CPU runs).
    """

    amp: str = "auto"
    channels_last: str = "auto"
    compile: str = "off"
    compile_backend: str = "inductor"
    check_every: int | None = None
    fused_adam: str = "auto"
    cpu_heap: str = "auto"

    def __post_init__(self):
        if self.amp not in _AMP:
            raise ValueError(f"Acceleration.amp must be one of {_AMP}, got {self.amp!r}")
        for name in ("channels_last", "compile", "fused_adam", "cpu_heap"):
            value = getattr(self, name)
            if isinstance(value, bool):
                object.__setattr__(self, name, "on" if value else "off")
            elif value not in _SWITCH:
                raise ValueError(f"Acceleration.{name} must be one of {_SWITCH}, got {value!r}")
        if self.check_every is not None and (
            isinstance(self.check_every, bool) or not isinstance(self.check_every, int)
            or self.check_every < 1
        ):
            raise ValueError(f"Acceleration.check_every must be None or an integer >= 1, "
                             f"got {self.check_every!r}")
        if not isinstance(self.compile_backend, str) or not self.compile_backend:
            raise ValueError(f"Acceleration.compile_backend must be a name, got {self.compile_backend!r}")

    @classmethod
    def off(cls) -> Acceleration:
        """Plain float32 eager execution with a host check every iteration (the CPU path)."""
        return cls(amp="off", channels_last="off", compile="off", check_every=1, fused_adam="off",
                   cpu_heap="off")

    def to_dict(self) -> dict:
        return asdict(self)


#: Named executions compared by the benchmarks: plain float32, the automatic one, and that plus
#: ``torch.compile``.
EXECUTIONS: dict[str, Acceleration] = {
    "fp32": Acceleration.off(),
    "auto": Acceleration(),
    "compiled": Acceleration(compile="on"),
}


@dataclass(frozen=True)
class ResolvedAcceleration:
    """What :func:`resolve_acceleration` chose for one device."""

    amp_dtype: torch.dtype | None
    channels_last: bool
    compile: bool
    compile_backend: str
    check_every: int
    fused_adam: bool
    cpu_heap: bool = False

    def describe(self) -> str:
        amp = "bf16" if self.amp_dtype is torch.bfloat16 else "fp32"
        parts = [amp, "channels-last" if self.channels_last else "NCHW",
                 f"compile({self.compile_backend})" if self.compile else "eager",
                 f"check every {self.check_every}"]
        if self.fused_adam:
            parts.append("fused Adam")
        if self.cpu_heap:
            parts.append("kept heap")
        return ", ".join(parts)


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton

        return bool(has_triton())
    except Exception:  # noqa: BLE001 - any failure means: no usable Triton
        return False


def _bf16_ok(device: torch.device) -> bool:
    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported())
        except Exception:  # noqa: BLE001
            return False
    return device.type == "cpu"


def resolve_acceleration(acc: Acceleration | dict | None, device: torch.device,
                         residual_generator: bool = True) -> ResolvedAcceleration:
    """Turn ``"auto"`` choices into concrete ones for ``device``.

    ``residual_generator``: the generator's output is added to a prior-stage or initial image
    (automatic bfloat16 keeps the accuracy only then).

    Raises
    ------
    ValueError
        ``amp="bf16"`` on a device without bfloat16 support, or an option out of range.
    """
    if acc is None:
        acc = Acceleration()
    elif isinstance(acc, dict):
        known = {f.name for f in fields(Acceleration)}
        unknown = sorted(set(acc) - known)
        if unknown:
            raise ValueError(f"unknown acceleration option(s) {unknown}; known: {sorted(known)}")
        acc = Acceleration(**acc)
    elif not isinstance(acc, Acceleration):
        raise ValueError(f"acceleration must be an Acceleration, a dict or None, got {type(acc).__name__}")
    cuda = device.type == "cuda"
    if acc.amp == "bf16" and not _bf16_ok(device):
        raise ValueError(f"amp='bf16' is not supported on {device}")
    auto_amp = acc.amp == "auto" and cuda and residual_generator and _bf16_ok(device)
    amp = torch.bfloat16 if (acc.amp == "bf16" or auto_amp) else None
    cpu = device.type == "cpu"
    channels_last = acc.channels_last == "on" or (acc.channels_last == "auto" and (cuda or cpu))
    compile_on = acc.compile == "on" or (acc.compile == "auto" and cuda and _has_triton())
    check = acc.check_every if acc.check_every is not None else (25 if cuda else 1)
    fused = acc.fused_adam == "on" or (acc.fused_adam == "auto" and (cuda or cpu))
    heap = cpu and (acc.cpu_heap == "on" or (acc.cpu_heap == "auto" and _glibc() is not None))
    return ResolvedAcceleration(amp, channels_last, compile_on, acc.compile_backend, check, fused, heap)


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
HEAP_BLOCK = 32 * 1024**2  # glibc's largest mmap threshold on 64-bit systems


def _glibc():
    """glibc's ``libc`` through ctypes, or None (another C library, or not Linux)."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_cpu_heap(trim: int = 16 * HEAP_BLOCK) -> bool:
    """glibc: serve blocks up to 32 MB from the heap and keep up to ``trim`` bytes of freed heap.

    An iteration frees and re-allocates the same large buffers (gradients, activations); with
    glibc's defaults many of them go back to the system and are faulted in again, page by page,
    at the next iteration. Process-wide; returns False where glibc is not the C library.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, int(trim)))


class CompiledOrEager:
    """Call ``torch.compile(fn)`` when enabled; on the first failure warn once and stay eager.

    Parameters
    ----------
    fn : callable
        The function or module to run.
    enabled : bool
        Compile at all.
    backend : str
        ``torch.compile`` backend.
    name : str
        What the warning calls it.
    """

    def __init__(self, fn: Callable, enabled: bool, backend: str = "inductor", name: str = "function"):
        self.fn = fn
        self.name = name
        self.error: str | None = None
        self._compiled: Callable | None = None
        if enabled:
            try:
                self._compiled = torch.compile(fn, backend=backend, dynamic=False)
            except Exception as exc:  # noqa: BLE001 - e.g. an unknown backend name
                self.fall_back(exc)

    @property
    def compiled(self) -> bool:
        """True while the compiled version is in use."""
        return self._compiled is not None

    def fall_back(self, exc: BaseException) -> None:
        """Stop using the compiled version (``exc`` made it fail), with one warning."""
        self._compiled = None
        self.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        warnings.warn(f"torch.compile of the {self.name} failed ({self.error}); running it eagerly",
                      RuntimeWarning, stacklevel=3)

    def __call__(self, *args, **kwargs):
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except (torch.cuda.OutOfMemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - compiler and tracing errors of any kind
                self.fall_back(exc)
        return self.fn(*args, **kwargs)


class Losses(MutableMapping):
    """The losses of one iteration, read from the device only when a value is first looked up.

    Behaves as a ``dict`` of floats. Keeping the values on the device lets the GPU run ahead of the
    host: a loop that looks at the losses only every few iterations does not wait for each one.
    """

    __slots__ = ("_names", "_floats", "_tensor_names", "_tensor", "_values")

    def __init__(self, values: dict[str, torch.Tensor | float]):
        self._names = tuple(values)
        self._floats = {k: float(v) for k, v in values.items() if not torch.is_tensor(v)}
        self._tensor_names = tuple(k for k, v in values.items() if torch.is_tensor(v))
        self._values: dict[str, float] | None = None
        self._tensor = None
        if self._tensor_names:  # one stacked tensor: one copy to the host when read
            self._tensor = torch.stack([values[k].detach().reshape(()).float() for k in self._tensor_names])
        else:
            self._materialise()

    def _materialise(self) -> dict[str, float]:
        if self._values is None:
            read = dict(zip(self._tensor_names, self._tensor.tolist())) if self._tensor is not None else {}
            self._values = {k: read[k] if k in read else self._floats[k] for k in self._names}
            self._tensor = None
        return self._values

    def __getitem__(self, key: str) -> float:
        return self._materialise()[key]

    def __setitem__(self, key: str, value: float) -> None:
        self._materialise()[key] = float(value)

    def __delitem__(self, key: str) -> None:
        del self._materialise()[key]

    def __contains__(self, key: object) -> bool:  # without reading the device
        return key in (self._values if self._values is not None else self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._materialise() if self._values is not None else self._names)

    def __len__(self) -> int:
        return len(self._values) if self._values is not None else len(self._names)

    @property
    def pending(self) -> bool:
        """True until a value has been read (no host-device copy has happened yet)."""
        return self._values is None

    def __repr__(self) -> str:
        return f"Losses({self._materialise()!r})"
