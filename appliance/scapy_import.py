"""Importing scapy without `cryptography`.

scapy's config imports cryptography whenever it is installed (to know whether its TLS
and IPsec layers can work): +9 MB of RSS in the gateway (62.3 -> 71.9 MB with 201
devices, session 7) and in the link service, whose ARP, ICMP and DNS packets need none
of it. The image does not install it, but its venv sees the system's packages, and any
Debian package that pulls in python3-cryptography (certbot, say) would bring it in; the
test extras install it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# One thread at a time hides and unhides, so a second one cannot see the hiding entry
# and leave it behind, or remove it while the first is still loading scapy. Reentrant:
# a block may call a function that has its own.
_lock = threading.RLock()


@contextmanager
def cryptography_hidden() -> Iterator[None]:
    """Import scapy's modules inside this block: `import cryptography` fails while it
    runs, unless cryptography was already imported; afterwards it works as usual."""
    with _lock:
        hide = "cryptography" not in sys.modules
        if hide:
            sys.modules["cryptography"] = None  # type: ignore[assignment]  # -> ImportError
        try:
            yield
        finally:
            if hide and "cryptography" in sys.modules and sys.modules["cryptography"] is None:
                del sys.modules["cryptography"]
