"""model: the key's fields and its digest, shared by the journal, the shards and the comparison of reports."""

from __future__ import annotations

from reconcile.model import KEY_FIELDS, key_digest


def test_the_key_fields_are_the_four_values_the_platform_is_asked_about() -> None:
    """company, organisation, folder, filename: the order of a Key and of the API's body."""
    assert KEY_FIELDS == ("company", "organisation", "folder", "filename")


def test_the_digest_is_16_bytes_and_tells_keys_apart_at_the_field_boundaries() -> None:
    """Text moved across a field boundary, or a letter in another case, gives another 16-byte digest."""
    key = ("acme", "acme-ca", "2026/11/25", "rec-0001.mp3")
    assert len(key_digest(key)) == 16
    assert key_digest(("ab", "c", "d", "e")) != key_digest(("a", "bc", "d", "e"))
    assert key_digest(("a", "b", "c", "d")) != key_digest(("a", "b", "c", "D"))  # values are exact, case and all


def test_a_lone_surrogate_has_a_digest_too() -> None:
    """A value no UTF-8 encoder accepts (a lone surrogate read from a damaged export) still digests, distinctly."""
    assert key_digest(("a", "b", "c", "\udcff")) != key_digest(("a", "b", "c", "\udcfe"))
