"""The same cost for an unknown account as for a wrong password or Wi-Fi secret.

Shared by the panel's accounts and the members' Wi-Fi secrets, both scrypt hashes
(Werkzeug's default).
"""

from __future__ import annotations

import functools

from werkzeug.security import check_password_hash, generate_password_hash


@functools.cache
def _dummy_hash() -> str:
    """Made on first use, not at import: scrypt is ~0.1 s of CPU (more on a Pi) at every
    start of each service that imports the accounts, most of which never log anyone in."""
    return generate_password_hash("not-a-password")


def dummy_check(secret: str) -> None:
    """One scrypt check that cannot succeed, for a login whose account does not exist."""
    check_password_hash(_dummy_hash(), secret)
