"""The desktop window over a real tor on the private Tor network (tests/tor/network.py).

Alice's window follows her profile's "tor" setting (ServiceConfig(tor=None), as the app
opens it): the sidebar shows the bootstrap, then "Tor: reachable" with her onion address;
Bob, reachable only through Tor, becomes her contact by invite and is shown with the
onion mark; turning the setting off in Settings stops her tor while the window runs.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from messenger.net.tor import TorSettings
from messenger.net.transport import Timing
from messenger.service import PeerService, ServiceConfig
from tests.tor.conftest import pid_alive
from tests.ui import conftest as ui_fixtures

# The Qt tests' fixtures (a qasync loop on pytest-qt's QApplication, the app's theme, main
# windows over a service), used here beside the private Tor network's.
qloop = ui_fixtures.qloop
app_theme = ui_fixtures.app_theme
open_window = ui_fixtures.open_window

pytestmark = [pytest.mark.tor, pytest.mark.timeout(420)]

TOR_TIMING = Timing(
    handshake_timeout=30.0, keepalive_interval=5.0, dead_after=30.0, connect_timeout=5.0
)


def _config(
    host: str, tor_settings: TorSettings, tor: bool | None, *, tor_only: bool = True
) -> ServiceConfig:
    return ServiceConfig(
        listen_host=host,
        listen_port=0,
        discovery=False,
        timing=TOR_TIMING,
        dial_base=0.5,
        dial_cap=5.0,
        tor=tor,
        tor_settings=tor_settings,
        tor_only=tor_only,  # no direct path: every session runs through Tor
    )


def test_window_reaches_tor_shows_a_tor_contact_and_switches_tor_off(
    qloop: Any, qtbot: Any, open_window: Any, tmp_path: Path, tor_settings: TorSettings
) -> None:
    from ui.views.settings_dialog import SettingsDialog

    services: list[PeerService] = []
    try:
        alice, _ = qloop.run(
            PeerService.create_profile(
                tmp_path / "alice",
                "Alice",
                None,
                # Tor only through the window's setting (below), not the config
                config=_config("127.0.0.2", tor_settings, None, tor_only=False),
                rng=random.Random(1),
                settings={"tor": True},
            )
        )
        services.append(alice)
        window = open_window(alice)
        bar = window.tor_status
        seen: list[str] = [bar.label.text()]
        window.bridge.torStatusChanged.connect(lambda _s: seen.append(bar.label.text()))
        qloop.until(
            lambda: bar.label.text() in ("Tor: reachable", "Tor: not available"),
            timeout=150,
            what="Tor reachable in the sidebar",
        )
        assert bar.label.text() == "Tor: reachable", bar.toolTip()
        assert alice.tor is not None and alice.tor.address is not None
        assert alice.tor.address in bar.toolTip()
        assert any(t.startswith("Connecting to the Tor network…") for t in seen), seen
        assert not bar.progress.isVisible()

        bob, _ = qloop.run(
            PeerService.create_profile(
                tmp_path / "bob",
                "Bob",
                None,
                config=_config("127.0.0.3", tor_settings, True),
                rng=random.Random(2),
            )
        )
        services.append(bob)
        qloop.until(lambda: bob.reach.tor_status.state == "ready", timeout=150, what="Bob's onion")
        # "Hide my IP address from contacts (Tor only)", from Settings.
        window.show_settings("Network")
        dialog = next(d for d in window._dialogs if isinstance(d, SettingsDialog))
        assert dialog.tor_only_box.isEnabled() and not dialog.tor_only_box.isChecked()
        assert "127.0.0.2" in dialog.addresses_shown.text()
        dialog.tor_only_box.setChecked(True)
        qloop.until(lambda: alice.reach.tor_only, what="the Tor-only setting applied")
        qloop.until(lambda: "127.0.0.2" not in dialog.addresses_shown.text())
        assert dialog.addresses_shown.text() == alice.tor.address
        dialog.reject()
        code, invite = qloop.run(alice.invites.create_invite())
        assert [str(a) for a in invite.addresses] == [alice.tor.address]  # Tor only
        qloop.run(bob.invites.accept_invite(code), timeout=120)
        qloop.until(
            lambda: alice.contacts.is_online(bob.contact_id), timeout=120, what="Bob online"
        )
        qloop.until(lambda: window.conversations.item(bob.contact_id) is not None)
        window.open_conversation(bob.contact_id)
        item = window.conversations.item(bob.contact_id)
        assert item.online and item.route == "tor"
        assert window.chat.header.status.text() == "online · over Tor"

        # Off from Settings, while running: Alice's tor stops, and with it Bob's session.
        pid = alice.tor.manager.pid if alice.tor.manager is not None else None
        window.show_settings("Network")
        dialog = next(d for d in window._dialogs if isinstance(d, SettingsDialog) and d.isVisible())
        assert dialog.tor_box.isChecked() and dialog.tor_only_box.isChecked()
        assert dialog.tor_state.text().startswith("Connected")
        assert dialog.tor_address.text() == alice.tor.address
        assert alice.tor.address in dialog.addresses_shown.text()
        dialog.tor_box.setChecked(False)
        qloop.until(lambda: bar.label.text() == "Tor: off", timeout=60, what="Tor: off")
        assert alice.tor is None and alice.settings["tor"] is False
        assert ".onion" not in dialog.addresses_shown.text()  # invites no longer carry it
        assert "127.0.0.2" in dialog.addresses_shown.text()  # Tor only ends with Tor
        assert not dialog.tor_only_box.isEnabled()
        assert not dialog.tor_address.isVisible()
        qloop.until(
            lambda: not window.conversations.item(bob.contact_id).online,
            timeout=90,
            what="Bob offline once Tor is off",
        )
        if pid is not None:
            assert not pid_alive(pid), "tor still running after it was turned off"
        dialog.reject()
    finally:
        for service in reversed(services):
            qloop.run(service.aclose(), timeout=60)
