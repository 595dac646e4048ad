"""The keys of the profile's settings and blobs, and the settings' defaults.

Apart from service.py so that the raw read path of one-shot CLI commands
(storage/reader.py) reads the same keys without importing the service.
"""

from __future__ import annotations

from typing import Any

SETTING_NAME = "display_name"
SETTING_PORT = "listen_port"
SETTING_READ_RECEIPTS = "read_receipts"
SETTING_TYPING = "typing_notifications"
BLOB_IDENTITY = "identity"
# Our LAN advertising key: contacts recognise our mDNS token with it (net/discovery/advert.py).
BLOB_DISCOVERY_KEY = "discovery_key"
SETTING_VISIBLE = "visible"

SETTING_NOTIFICATIONS = "notifications"
SETTING_PREVIEWS = "notification_previews"
SETTING_THEME = "theme"
# "Reach contacts over the internet (Tor)": True, False, or None (never chosen: on when a
# tor binary is found). Followed when ServiceConfig.tor is None (the desktop app).
SETTING_TOR = "tor"
# "Hide my IP address from contacts (Tor only)": with Tor on (and followed, as "tor"),
# Hello and invites carry only the onion address, as ServiceConfig.tor_only does.
SETTING_TOR_ONLY = "tor_only"

DEFAULT_SETTINGS: dict[str, Any] = {
    # Read receipts tell a contact exactly when you read; off unless the user opts in.
    SETTING_READ_RECEIPTS: False,
    SETTING_TYPING: True,
    SETTING_NOTIFICATIONS: True,
    SETTING_PREVIEWS: True,
    SETTING_THEME: "system",  # "system", "light" or "dark"
    # "Visible on this network": announce the display name on the LAN, see the Nearby list,
    # accept nearby pairing requests. Off unless the user opts in.
    SETTING_VISIBLE: False,
    SETTING_TOR: None,
    SETTING_TOR_ONLY: False,
}
