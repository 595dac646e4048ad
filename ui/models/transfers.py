"""What the UI says about a file transfer and what a user can do with it: the status line
under a file's name, the actions its buttons and menus offer, what a click on it does.

Plain functions of a TransferRecord, shared by the models (accessible text) and the views
(bubbles, the files panel).
"""

from __future__ import annotations

from messenger import TransferRecord, TransferState, human_size


def human_duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def status_text(t: TransferRecord) -> str:
    """The line under the file name: what is happening, how fast, how long still."""
    size = human_size(t.size)
    if t.state is TransferState.COMPLETE:
        if t.outgoing:
            peers = "; ".join(status for _, status in t.peers) or "offered"
            return f"{size} · {peers}" + ("" if t.serving else " · paused")
        return f"{size} · received"
    if t.state is TransferState.OFFERED:
        return f"{size} · offered to you"
    if t.state is TransferState.PAUSED:
        return f"{human_size(t.have_bytes)} of {size} · paused"
    if t.state is TransferState.CANCELLED:
        return f"{size} · cancelled" + (f" ({t.error})" if t.error else "")
    if t.state is TransferState.FAILED:
        return f"{human_size(t.have_bytes)} of {size} · stopped: {t.error}"
    text = f"{human_size(t.have_bytes)} of {size}"
    if t.error:
        return f"{text} · {t.error}"
    if t.speed > 0:
        text += f" · {human_size(t.speed)}/s"
        if t.eta is not None:
            text += f" · {human_duration(t.eta)} left"
    return text


def in_progress(t: TransferRecord) -> bool:
    """A download under way or waiting for a decision (what the files panel lists)."""
    return not t.outgoing and t.state in (
        TransferState.OFFERED,
        TransferState.DOWNLOADING,
        TransferState.PAUSED,
        TransferState.FAILED,
    )


ACTION_LABELS = {
    "accept": "Download",
    "pause": "Pause",
    "resume": "Resume",
    "cancel": "Cancel",
    "open": "Open",
    "folder": "Show in folder",
    "save": "Save as…",
    "view": "View",
    "forward": "Forward…",
}
MENU_ONLY = ("view", "forward")  # in the bubbles' menus, no button in the panel


def available_actions(t: TransferRecord, saved: bool = False) -> list[str]:
    """What the user can do with a file now, in the order the buttons and menus show them."""
    complete = t.state is TransferState.COMPLETE
    active = (TransferState.OFFERED, TransferState.DOWNLOADING, TransferState.PAUSED)
    shown = {
        "accept": t.state in (TransferState.OFFERED, TransferState.FAILED),
        "pause": t.state is TransferState.DOWNLOADING or (complete and t.outgoing and t.serving),
        "resume": t.state is TransferState.PAUSED or (complete and t.outgoing and not t.serving),
        "cancel": t.state in active,
        "open": complete,
        "folder": complete and saved,
        "save": complete,
        "forward": complete,
    }
    return [action for action, show in shown.items() if show]


def primary_action(t: TransferRecord) -> str | None:
    """What a click on the file's message bubble does."""
    if t.state in (TransferState.OFFERED, TransferState.FAILED):
        return "accept"
    if t.state is TransferState.DOWNLOADING:
        return "pause"
    if t.state is TransferState.PAUSED:
        return "resume"
    if t.state is TransferState.COMPLETE:
        return "view" if t.mime.startswith("image/") else "open"
    return None
