"""Signed output URLs of local storage: what verifies, what does not, and the secret the farm keeps itself."""

import pytest
from sqlalchemy import delete, select

from models.db import session_scope
from models.tables import FarmSecret
from models.url_signing import SECRET_NAME, UrlRejected, UrlSigner, url_signing_secret

KEY = "outputs/abc/1/0.webp"
NOW = 1_800_000_010.0  # not on a minute boundary


def parts(query: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in query.split("&"))


def test_a_signed_key_verifies_until_it_expires_rounded_up_to_the_minute() -> None:
    signer = UrlSigner(lambda: b"secret", 3600)
    signed = parts(signer.query(KEY, now=NOW))

    expires = int(signed["expires"])
    assert NOW + 3600 <= expires < NOW + 3600 + 60 and expires % 60 == 0
    assert signer.query(KEY, now=NOW + 1) == signer.query(KEY, now=NOW)  # the same URL while polling
    signer.check(KEY, signed["expires"], signed["signature"], now=expires - 1)
    with pytest.raises(UrlRejected, match="expired at .*fetch the prediction again"):
        signer.check(KEY, signed["expires"], signed["signature"], now=expires)


@pytest.mark.parametrize(
    ("key", "expires", "signature", "reason"),
    [
        ("outputs/other/1/0.webp", None, None, "does not match"),  # another file, this file's signature
        (KEY, "1800003720", None, "does not match"),  # a later expiry, this expiry's signature
        (KEY, None, "AAAA", "does not match"),
        (KEY, "", "", "not signed"),
        (KEY, "١٢٣", None, "does not match"),  # digits, but not ASCII ones
        (KEY, "9" * 5000, None, "does not match"),  # too long to be an expiry
        (KEY, None, "sïgnature", "does not match"),  # not ASCII: compared as bytes, never a crash
    ],
)
def test_a_tampered_url_is_rejected(key: str, expires: str | None, signature: str | None, reason: str) -> None:
    signer = UrlSigner(lambda: b"secret", 3600)
    signed = parts(signer.query(KEY, now=NOW))

    with pytest.raises(UrlRejected, match=reason):
        signer.check(
            key,
            signed["expires"] if expires is None else expires,  # None: the signed URL's own value
            signed["signature"] if signature is None else signature,
        )
    other = UrlSigner(lambda: b"another secret", 3600)  # a farm with another secret
    with pytest.raises(UrlRejected, match="does not match"):
        other.check(KEY, signed["expires"], signed["signature"], now=NOW)


def test_the_secret_is_made_once_and_kept_in_postgres(database_url: str) -> None:
    with session_scope(database_url) as session:
        session.execute(delete(FarmSecret).where(FarmSecret.name == SECRET_NAME))
    url_signing_secret.cache_clear()
    first = url_signing_secret(database_url)
    url_signing_secret.cache_clear()  # as another process would read it

    assert url_signing_secret(database_url) == first and len(first) == 32
    with session_scope(database_url) as session:
        assert session.scalar(select(FarmSecret.value).where(FarmSecret.name == SECRET_NAME)) == first.hex()
    assert url_signing_secret(database_url, "configured") == b"configured"  # the setting wins
