"""File and image transfer (docs/protocol.md §17).

- `chunks`   manifest, per-file chunk encryption and hashing (pure)
- `names`    file name checks and sanitising (pure)
- `store`    the attachment store: ciphertext chunks on disk, nothing in the clear
- `bulk`     the bulk-data connection: records, keys, the serving and fetching loops
- `manager`  FileManager: offers, downloads from several sources, pause/resume/cancel
"""
