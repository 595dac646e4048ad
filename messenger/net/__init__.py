"""Networking: the listener, connection registry and dialers (links), and reach."""
