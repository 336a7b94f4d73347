"""Attachments: content-addressed, chunked, verifiable files that travel with posts.

`manifest` is the format (what the signed post names), `seal` the per-attachment
encryption of private communities, `store` the chunks on disk and what is
present, `media` strips image metadata and makes thumbnails, `entries` reads and
writes a post's attachment list, `exchange` is what bundles and LAN sessions
carry (inventories as chunk bitmaps, chunk records, budgets).
"""
