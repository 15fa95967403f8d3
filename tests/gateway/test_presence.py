"""dnsmasq's lease file as the gateway reads it: pure, no network."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

from appliance.gateway.presence import ArpProber, LeaseFile, parse_leases

LEASES = (
    "1779890000 02:00:00:00:00:0a 10.42.0.10 phone-de-marie 01:02:00:00:00:00:0a\n"
    "1779890000 02:00:00:00:00:0b 10.42.0.11 x$(reboot)`id`;flush\x07ruleset *\n"
    "0 02:00:00:00:00:0c 10.42.0.12 * *\n"
    "duid 00:01:00:01:2c:aa:bb:cc\n"
    "1779890000 1000 fd00::5 host 00:01\n"  # an IPv6 lease: not ours
    "1779890000 01:00:5e:00:00:01 10.42.0.13 multicast *\n"  # a multicast MAC: refused
    "garbage\n"
    "1779890000 02:00:00:00:00:0d 10.42.0.300 bad-ip *\n"
)


def test_leases_parsed_as_data_garbage_skipped():
    leases = parse_leases(LEASES)
    assert [(x.mac, str(x.ip), x.hostname, x.expires) for x in leases] == [
        ("02:00:00:00:00:0a", "10.42.0.10", "phone-de-marie", 1779890000.0),
        ("02:00:00:00:00:0b", "10.42.0.11", "x$(reboot)`id`;flushruleset", 1779890000.0),
        ("02:00:00:00:00:0c", "10.42.0.12", "", 0.0),
    ]
    long = parse_leases(f"1 02:00:00:00:00:01 10.0.0.1 {'a' * 300} *")
    assert [len(x.hostname) for x in long] == [63]


def test_lease_file_reread_on_change_expired_leases_dropped(tmp_path):
    path = tmp_path / "dnsmasq.leases"
    lf = LeaseFile(path)
    assert lf.current(0) == {}  # no file yet: no device
    path.write_text(LEASES)
    assert set(lf.current(1779880000)) == {"02:00:00:00:00:0a", "02:00:00:00:00:0b",
                                            "02:00:00:00:00:0c"}
    assert set(lf.current(1779890000)) == {"02:00:00:00:00:0c"}  # infinite lease stays
    path.write_text("1779890000 02:00:00:00:00:0e 10.42.0.14 new *\n")
    os.utime(path, ns=(1, 2))  # a different stamp even within one clock tick
    assert set(lf.current(1779880000)) == {"02:00:00:00:00:0e"}
    path.unlink()
    assert lf.current(0) == {}


def test_no_target_no_socket():
    def factory(_lan):
        raise AssertionError("no socket for an empty round")

    assert ArpProber("br0", ipaddress.IPv4Address("10.42.0.1"),
                     socket_factory=factory).probe([]) == set()


def test_scapy_loaded_without_cryptography():
    """The prober's scapy import leaves cryptography out (9 MB of RSS in the gateway when
    the test extras installed it), and a later import of it still works. In a fresh
    interpreter: this one may have imported either already."""
    code = (
        "import importlib.util\n"
        "import sys\n"
        "from appliance.gateway.presence import _scapy_arp\n"
        "ARP, Ether = _scapy_arp()\n"
        "frame = bytes(Ether(dst='02:00:00:00:00:01') / ARP(pdst='10.42.0.2'))\n"
        "assert frame[12:14] == b'\\x08\\x06' and len(frame) == 42\n"
        "assert 'cryptography' not in sys.modules, sorted(sys.modules)\n"
        "if importlib.util.find_spec('cryptography'):\n"
        "    import cryptography\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True,
                   timeout=60)
