"""Reading a stored database dump back: the gzipped plain-SQL ``pg_dump`` that ``backup`` writes,
opened from the object store and read once, in bounded chunks.

One read does everything a check of the dump needs: it hashes the compressed bytes as they arrive
(to compare with the checksum recorded when the dump was made), decompresses them into SQL without
ever holding the dump whole, and keeps the first and last few KB of SQL (where pg_dump names the
server and writes its closing line). What counts as a good backup is ``backup``'s call; this module
only reports what it read. The gzip settings live here because writing and reading must agree on
them.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator

from observatory_pipelines.core.platform.storage import ObjectStore

#: How much is read from the store, or decompressed, at a time.
CHUNK = 1024 * 1024
GZIP_WBITS = 31  # zlib's gzip container (header and CRC trailer), readable by gunzip
#: How much SQL is kept from each end of the dump.
EDGE_BYTES = 4096


class StoredDump:
    """One read of a stored dump, as SQL in chunks of at most ``CHUNK`` bytes.

    After the iteration ends: ``sha256`` (of the stored, compressed bytes), ``gzip_valid`` (False
    when zlib refused the stream), ``gzip_complete`` (the last gzip member ended), ``head`` and
    ``tail`` (the first and last ``EDGE_BYTES`` of SQL). An invalid stream stops the SQL but not
    the reading, so that the hash still covers the whole object: a checksum mismatch is the clearer
    diagnosis. ``progress(done, total)`` gets the compressed bytes read after each chunk.
    """

    def __init__(self, store: ObjectStore, key: str, total: int, progress: Callable[[int, int], None] | None = None):
        self._store = store
        self._key = key
        self._total = total
        self._progress = progress
        self.sha256: str | None = None
        self.gzip_valid = True
        self.gzip_complete = False
        self.head = b""
        self.tail = b""

    def __iter__(self) -> Iterator[bytes]:
        digest = hashlib.sha256()
        gunzip = zlib.decompressobj(GZIP_WBITS)
        head, tail, done, invalid = b"", b"", 0, False
        with self._store.open(self._key) as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                done += len(chunk)
                pending = chunk
                while pending and not invalid:
                    try:
                        # Bounded output: a chunk of highly compressible rows could inflate a hundredfold.
                        sql = gunzip.decompress(pending, CHUNK)
                    except zlib.error:
                        # Keep hashing: a checksum mismatch is the clearer diagnosis.
                        invalid = True
                        break
                    if gunzip.eof:
                        pending = gunzip.unused_data
                        if pending:  # Concatenated gzip members are one gzip file (`cat a.gz b.gz`).
                            gunzip = zlib.decompressobj(GZIP_WBITS)
                    else:
                        pending = gunzip.unconsumed_tail
                    if len(head) < EDGE_BYTES:
                        head += sql[: EDGE_BYTES - len(head)]
                    tail = (tail + sql[-EDGE_BYTES:])[-EDGE_BYTES:]
                    if sql:
                        yield sql
                if self._progress:
                    self._progress(done, self._total)
        self.sha256 = digest.hexdigest()
        self.gzip_valid = not invalid
        self.gzip_complete = gunzip.eof
        self.head, self.tail = head, tail
