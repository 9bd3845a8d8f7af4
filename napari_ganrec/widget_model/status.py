"""What the Run box says about a run, without Qt: the status text, the time left, which buttons work."""

from __future__ import annotations

from dataclasses import dataclass

from .state import RunState, format_seconds


@dataclass(frozen=True)
class Buttons:
    """Which of Run / Pause / Stop can be pressed, and what the pause button reads."""

    run: bool
    pause: bool
    stop: bool
    pause_text: str


def button_states(status: str) -> Buttons:
    """The Run box's buttons for a run in ``status`` (``"idle"``, ``"running"``, ``"paused"``, ...)."""
    active = status in ("running", "paused", "stopping")
    return Buttons(run=not active, pause=status in ("running", "paused"),
                   stop=status in ("running", "paused"),
                   pause_text="Resume" if status == "paused" else "Pause")


def status_text(state: RunState, max_losses: int = 4) -> str:
    """The status line: ``"running: iteration 12/200, 3.4 s"``, the latest non-zero losses, any message."""
    if state.status == "idle":
        return "idle"
    txt = f"{state.status}: iteration {state.iteration}/{state.total}, {state.elapsed:.1f} s"
    losses = {k: v for k, v in state.last_losses().items() if v != 0}
    if losses:
        txt += "\n" + ", ".join(f"{k} {v:.3g}" for k, v in list(losses.items())[:max_losses])
    if state.message:
        txt += f"\n{state.message}"
    return txt


def eta_text(state: RunState) -> str | None:
    """The time-left line of a running run; ``""`` clears it, ``None`` leaves it as it is.

    While running without an estimate yet (the first iterations) the last line stays; any other
    status clears it.
    """
    if state.status == "idle":
        return None
    eta = state.eta() if state.status == "running" else None
    if eta is not None:
        return f"ETA {format_seconds(eta)} (whole run about {format_seconds(state.elapsed + eta)})"
    return None if state.status == "running" else ""
