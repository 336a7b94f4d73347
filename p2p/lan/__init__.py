"""LAN sync: mDNS discovery, authenticated channels, sync sessions."""
