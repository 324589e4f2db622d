"""What every stage shares: a recording's key, and its digest.

A key is the four values that name a recording on the platform; the digest is how the journal, the shards and the
comparison with an earlier report find a key again without holding its text.
"""

from __future__ import annotations

import hashlib

KEY_FIELDS = ("company", "organisation", "folder", "filename")

Key = tuple[str, str, str, str]


def key_digest(key: Key) -> bytes:
    """A 128-bit digest of a record's four values: exact for any practical purpose, 16 bytes on disk."""
    return hashlib.blake2b("\x1f".join(key).encode("utf-8", "surrogatepass"), digest_size=16).digest()
