"""Networking: the listener, connection registry and dialers (links), and reach (Tor
onion services: tor.py)."""
