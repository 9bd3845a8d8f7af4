"""The devices a run can be sent to, as the widget lists them (torch is asked, Qt is not needed)."""

from __future__ import annotations


def available_devices() -> list[str]:
    """``auto``, ``cpu`` and every device torch sees (``cuda:0``, ..., then ``mps``).

    Returns
    -------
    list of str
        Always starts with ``["auto", "cpu"]``; a torch that cannot be asked adds nothing.
    """
    out = ["auto", "cpu"]
    try:
        import torch

        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out.append("mps")
    except Exception:  # noqa: BLE001 - a broken torch must not break the widget
        pass
    return out
