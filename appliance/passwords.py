"""The same cost for an unknown account as for a wrong password or Wi-Fi secret.

Shared by the panel's accounts and the members' Wi-Fi secrets, both scrypt hashes
(Werkzeug's default).
"""

from __future__ import annotations

from werkzeug.security import check_password_hash

# The hash of a random secret nobody kept, made with Werkzeug's default method and
# parameters (scrypt, n 32768, r 8, p 1): a check against it costs what a check against
# a stored hash costs, and no service computes a hash at start or at its first unknown
# login to have it. tests/test_passwords.py fails if Werkzeug's default ever moves, so
# that it is made again with the new one.
DUMMY_HASH = (
    "scrypt:32768:8:1$3HNOwe7w5DOYJo7Q$a3d252e6c6d9b194b96eb51f9649c30c26443e2ce6b464308d"
    "aec2c0b4edaaaed99b84a9cc28130b7f6cf52ffa1cdde74d5ad75f98fe072b72266e09ecd1000d"
)


def method(hashed: str) -> str:
    """A Werkzeug hash's method and parameters, e.g. `scrypt:32768:8:1`."""
    return hashed.split("$", 1)[0]


def dummy_check(secret: str) -> None:
    """One scrypt check that cannot succeed, for a login whose account does not exist.
    Its result is ignored: the caller refuses the login whatever the secret."""
    check_password_hash(DUMMY_HASH, secret)
