"""Bundles: signed, optionally encrypted files that carry content on USB sticks."""
