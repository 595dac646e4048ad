"""Transports: how bytes reach a contact (TCP on the LAN, Tor onion services)."""
