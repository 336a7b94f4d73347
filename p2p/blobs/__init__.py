"""Attachments: content-addressed, chunked, verifiable files that travel with posts.

`manifest` is the format (what the signed post names), `seal` the per-attachment
encryption of private communities, `store` the chunks on disk and what is
present, `media` strips image metadata and makes thumbnails, `entries` reads a
post's attachment list, `attach` is what the faces call (attach, describe,
save, limits), `exchange` is what bundles carry (inventories as chunk bitmaps,
chunk records, budgets, the receiving side), `check` checks a bundle's chunks
without a store or key, `session` is the LAN phase. Specified in
docs/bundle-format.md §8 and docs/lan-protocol.md §6.
"""
