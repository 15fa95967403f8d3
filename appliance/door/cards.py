"""MIFARE Classic badge tokens: a per-card secret in sector 1, behind diversified keys.

A UID alone is public (any phone reads it, cheap "UID-changeable" cards copy it), so by
default a badge also carries a 16-byte token in :data:`TOKEN_SECTOR`, readable only with
a key derived from the site secret and the card's UID. Copying the UID does not copy
the key, so a clone fails :func:`read_token`. (MIFARE Classic's Crypto1 is itself weak
against a determined attacker with the card in hand; diversification keeps one broken
card from opening the others.)
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.door.reader import BadgeReader, CardRead

__all__ = [
    "DEFAULT_KEY",
    "TOKEN_BLOCK",
    "TOKEN_SECTOR",
    "TRAILER_BLOCK",
    "diversified_keys",
    "read_token",
    "write_token",
]

TOKEN_SECTOR = 1
TOKEN_BLOCK = TOKEN_SECTOR * 4  # first data block of the sector
TRAILER_BLOCK = TOKEN_SECTOR * 4 + 3
DEFAULT_KEY = b"\xff" * 6
# Transport configuration: key A reads and writes data and trailer. Kept so that
# re-enrolment with the diversified key A can rewrite everything.
TRANSPORT_ACCESS_BITS = bytes.fromhex("ff078069")
_DOMAIN = b"telecentre/mifare-classic/sector-key/v1"


def diversified_keys(site_secret: bytes, uid: bytes) -> tuple[bytes, bytes]:
    """Key A and key B (6 bytes each) for the card ``uid``: HMAC-SHA256 of the site
    secret over a domain label, the key name and the UID."""
    if not site_secret:
        raise ValueError("site secret is empty")
    if len(uid) not in (4, 7, 10):
        raise ValueError("a UID is 4, 7 or 10 bytes")

    def derive(name: bytes) -> bytes:
        msg = _DOMAIN + b"\x00" + name + b"\x00" + bytes((len(uid),)) + uid
        return hmac.new(site_secret, msg, hashlib.sha256).digest()[:6]

    return derive(b"A"), derive(b"B")


def _check_current(reader: BadgeReader, card: CardRead) -> None:
    """The reader only talks to the card its last poll returned."""
    if reader.current != card:
        raise ValueError("card is not the reader's current card (poll() it first)")


def write_token(reader: BadgeReader, card: CardRead, site_secret: bytes, token: bytes) -> bool:
    """Write ``token`` (16 bytes) to the token block and lock the sector with the card's
    diversified keys; True only once the token reads back with the new key.

    Works on a blank card (default key) and on an already enrolled one (re-enrolment
    with the diversified key).
    """
    if len(token) != 16:
        raise ValueError("the token is 16 bytes")
    _check_current(reader, card)
    key_a, key_b = diversified_keys(site_secret, card.uid)
    if not any(reader.authenticate(TRAILER_BLOCK, key, "A") for key in (DEFAULT_KEY, key_a)):
        return False
    if not reader.write_block(TOKEN_BLOCK, token):
        return False
    if not reader.write_block(TRAILER_BLOCK, key_a + TRANSPORT_ACCESS_BITS + key_b):
        return False
    return reader.authenticate(TOKEN_BLOCK, key_a, "A") and reader.read_block(TOKEN_BLOCK) == token


def read_token(reader: BadgeReader, card: CardRead, site_secret: bytes) -> bytes | None:
    """The card's token, or None when the diversified key does not open the sector
    (blank card, UID clone, another site's card) or the read fails."""
    _check_current(reader, card)
    key_a, _ = diversified_keys(site_secret, card.uid)
    if not reader.authenticate(TOKEN_BLOCK, key_a, "A"):
        return None
    return reader.read_block(TOKEN_BLOCK)
