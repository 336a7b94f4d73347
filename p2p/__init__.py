"""p2p: offline-first community sync over USB bundles and local Wi-Fi."""

__version__ = "0.1.0"
