"""File and image transfer (docs/protocol.md §17).

- `chunks`   manifest, per-file chunk encryption and hashing (pure)
- `names`    file name checks and sanitising (pure)
- `store`    the attachment store: ciphertext chunks on disk, nothing in the clear
- `bulk`     the bulk-data connection: records, keys, the serving and fetching loops
- `transfer` Transfer (one file as held here), shared settings, sizes, the ports files need
- `base`     the worker's state, shared helpers and records (FileBase)
- `offers`   our offers (1:1 and in groups) and those of others (FileOffers)
- `download` downloads from several sources; FileHave/FileControl news (FileDownloads)
- `serving`  tickets, inbound bulk connections, the serving loop (FileServing)
- `manager`  FileManager: lifecycle, public API, pause/resume/cancel, message dispatch
"""
