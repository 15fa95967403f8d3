"""A tiny authoritative DNS server for the namespace tests: every A query gets one answer.

Run as `python fake_dns.py ADDRESS ANSWER` inside the `wan` namespace.
"""

from __future__ import annotations

import socket
import sys

from scapy.layers.dns import DNS, DNSRR


def main() -> None:
    address, answer = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            query = DNS(data)
            name = query.qd.qname
        except Exception:  # not a query we understand: no answer, like a real server
            continue
        reply = DNS(id=query.id, qr=1, aa=1, rd=query.rd, ra=1, qd=query.qd,
                    an=DNSRR(rrname=name, type="A", ttl=60, rdata=answer))
        sock.sendto(bytes(reply), peer)


if __name__ == "__main__":
    main()
