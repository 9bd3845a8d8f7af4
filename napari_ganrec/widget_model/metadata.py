"""What a result layer's metadata says about how it was made (plain, JSON-friendly values)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .run import RunParams

__all__ = ["run_metadata", "resolve_device_name"]


def resolve_device_name(device: str) -> str:
    """The device ``device`` resolves to (``"auto"`` -> ``"cpu"``, ...); itself when it cannot."""
    try:
        from ..projector import resolve_device

        return str(resolve_device(device))
    except ValueError:
        return str(device)


def run_metadata(
    params: RunParams,
    *,
    source: str,
    slices: tuple[int, int] | None,
    layout: str,
    iteration: int,
    elapsed: float,
    status: str,
    started: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a result layer's ``metadata`` says about how it was made (plain, JSON-friendly)."""
    from .. import __version__

    started = started or datetime.now(timezone.utc)
    described = params.plan.describe(with_config=False)
    md: dict[str, Any] = {
        "napari_ganrec": __version__,
        "source": source,
        "method": described["method"],
        "method_label": params.label,
        "stages": described["stages"],
        "angles": [float(a) for a in params.angles],
        "center": None if params.center is None else float(params.center),
        "iterations": int(iteration),
        "iterations_requested": int(params.total),
        "preview_every": int(params.preview_every),
        "seed": int(params.seed),
        "device": resolve_device_name(params.device),
        "device_requested": params.device,
        "elapsed_s": round(float(elapsed), 3),
        "started": started.isoformat(timespec="seconds"),
        "status": status,
        "layout": layout,
        "slices": None if slices is None else [int(slices[0]), int(slices[1])],
    }
    if params.volume_slices > 0:
        md["volume_mode"] = {"slices": int(params.volume_slices), "first_iterations": int(params.iterations),
                             "warm_iterations": int(params.warm_iterations)}
    if params.options:
        md["options"] = {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in params.options.items()}
    if extra:
        md.update(extra)
    return md
