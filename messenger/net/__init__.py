"""Networking: the TCP transport and listener (transport), the connection registry and
dialers (links), LAN discovery over mDNS (discovery), and reach (Tor onion services: tor/)."""
