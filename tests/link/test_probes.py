"""The light probes' own code paths, where nothing needs a network."""

from __future__ import annotations

import subprocess
import sys

# A fresh interpreter: this one may have imported scapy or cryptography already. Each
# probe loads its scapy layers itself (echoes, their answers, the traceroute, DNS), so
# each is run once; the raw ICMP socket is a stand-in that keeps what is sent.
PROBES_WITHOUT_CRYPTOGRAPHY = """\
import importlib.util
import socket
import sys

from appliance.link import probes

real_socket = socket.socket


class Wire:
    def __init__(self, *args):
        self.sent = []
        self.udp = real_socket(socket.AF_INET, socket.SOCK_DGRAM)

    def setblocking(self, flag):
        pass

    def fileno(self):
        return self.udp.fileno()

    def sendto(self, data, address):
        self.sent.append((bytes(data), address))

    def recvfrom(self, size):
        raise BlockingIOError


socket.socket = Wire
try:
    pinger = probes.Pinger()
finally:
    socket.socket = real_socket
pinger.ident = 0x1234
assert pinger.ping(["192.0.2.1"], 0.01) == {"192.0.2.1": (2, 0, None)}
pinger.send("192.0.2.1")
assert pinger.replies(0) == []
assert pinger.sock.sent[0] == (b"\\x08\\x00\\xe5\\xca\\x12\\x34\\x00\\x01", ("192.0.2.1", 0))
assert [data[6:] for data, _ in pinger.sock.sent[1:]] == [b"\\x00\\x02", b"\\x00\\x03"]
probes.DnsProbe().resolve("127.0.0.1", "example.org", 0.05)  # whether answered or not
try:
    probes.first_isp_hop("127.0.0.1", None, max_ttl=1, timeout=0.1)
except PermissionError:  # not root: scapy's send/receive was loaded all the same
    pass
assert "scapy.sendrecv" in sys.modules and "scapy.layers.dns" in sys.modules

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP

query = bytes(DNS(id=0x1234, rd=1, qd=DNSQR(qname="example.org", qtype="A")))
assert query == b"\\x124\\x01\\x00\\x00\\x01" + bytes(6) + b"\\x07example\\x03org" + bytes(
    [0, 0, 1, 0, 1])
answer = IP(bytes(IP(src="192.0.2.1", dst="192.0.2.2") / ICMP(type=0, id=0x1234, seq=7)))
assert answer[ICMP].type == 0 and answer[ICMP].id == 0x1234 and answer[ICMP].seq == 7

assert "cryptography" not in sys.modules, sorted(sys.modules)
if importlib.util.find_spec("cryptography"):
    import cryptography
"""


def test_probes_load_scapy_without_cryptography():
    """The probes' scapy imports leave cryptography out (9 MB of RSS in the link service
    when it is installed), their packets are the same, and a later import of it works."""
    subprocess.run([sys.executable, "-c", PROBES_WITHOUT_CRYPTOGRAPHY], check=True,
                   timeout=60)
