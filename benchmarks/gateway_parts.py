"""Where the gateway's forwarding cost goes: `forwarding_ratio` split into its parts.

benchmarks/gateway.py measures the whole gateway (its running service) against bare
forwarding. This script builds the same topology (tests/gateway/netns.py) and the same
state (the measured member and 200 guests, their quotas, counters and htb classes, from
the product's own `ruleset.full_ruleset` and `shaping.Shaper`), without the service, and
measures one client's cubic iperf3 download and upload through each of:

- `bare`: plain routing, no table, no qdisc (the denominator);
- `ctnat`: conntrack and NAT only (a nat postrouting chain masquerading to the WAN, an
  empty forward chain): what any NAT gateway pays;
- `table`: the telecentre table with its 201 devices, no qdisc;
- `htb`: the two htb trees with their 201 classes, no conntrack (a two-rule forward chain
  sets the measured client's class, as the table's device chain does);
- `full`: the table and the htb trees, as in the product.

Each round runs the parts in a palindrome (bare, ctnat, table, htb, full, full, htb, ...)
so a slow drift of the machine falls on all alike; a part's ratio in a round is its two
runs' throughput over bare's two, and its figure is the median round. The last line is
one JSON object: `{"parts": {part: {"down": median, "up": median}}, "rounds": ...,
"bps": ...}`. Needs root.

    python benchmarks/gateway_parts.py              # 5 rounds, about 9 minutes
    python benchmarks/gateway_parts.py --rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.gateway import ruleset as rs  # noqa: E402
from appliance.gateway import shaping as sh  # noqa: E402
from benchmarks.gateway import FILLERS, filler, gateway_config, net  # noqa: E402
from tests.gateway.netns import Topology  # noqa: E402
from tests.gateway.traffic import compete, start_servers  # noqa: E402

PARTS = ("bare", "ctnat", "table", "htb", "full")
DIRECTIONS = ("down", "up")
SCRATCH_TABLE = "parts"  # the ctnat and htb parts' own table (inet), never the product's


def scratch_table(*chains: str) -> str:
    return f"table inet {SCRATCH_TABLE} {{\n" + "\n".join(chains) + "\n}\n"


def ctnat_table(wan: str) -> str:
    return scratch_table(
        "chain forward { type filter hook forward priority filter; policy accept; }",
        "chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
        f'  oifname "{wan}" counter masquerade\n}}',
    )


def priority_table(ip: str, class_id: str) -> str:
    return scratch_table(
        "chain forward { type filter hook forward priority filter; policy accept;\n"
        f"  ip saddr {ip} meta priority set {class_id}\n"
        f"  ip daddr {ip} meta priority set {class_id}\n}}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="each iperf3 run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/gateway_parts.py needs root (network namespaces)")
    topo = Topology()
    try:
        topo.build(n_clients=1)
        (client,) = topo.clients
        (port,) = start_servers(topo, 1)
        with tempfile.TemporaryDirectory(prefix="t5parts") as work:
            line = sh.line_from_config(gateway_config(Path(work)).gateway)
        runner = sh.TcRunner(("ip", "netns", "exec", topo.gw, "tc"), ("ip", "-n", topo.gw))
        shaper = sh.Shaper(line, runner, lan_is_bridge=True)
        member = rs.Owner("member", 1)
        owners = [rs.OwnerQuota(member, 10**13)]
        devices = [rs.Device.parse(client.mac, client.ip, member)]
        classes = [(ipaddress.IPv4Address(client.ip), "member", None, None)]
        cid = rs.class_id(ipaddress.IPv4Address(client.ip))  # the measured client's class
        for i in range(FILLERS):  # the guests as the gateway would have them
            guest, (mac, ip) = rs.Owner("guest", i + 1), filler(i)
            owners.append(rs.OwnerQuota(guest, 10**9))
            devices.append(rs.Device.parse(mac, ip, guest))
            classes.append((ipaddress.IPv4Address(ip), "guest", 5_000, 500))
        full_ruleset = rs.full_ruleset(net(), owners, devices)
        nft = topo.nft()

        def nft_text(text: str) -> None:
            subprocess.run(["ip", "netns", "exec", topo.gw, "nft", "-f", "-"], input=text,
                           text=True, check=True)

        def clear() -> None:
            nft.delete_tables()
            subprocess.run(["ip", "netns", "exec", topo.gw, "nft", "delete", "table", "inet",
                            SCRATCH_TABLE], capture_output=True)
            runner.batch(sh.teardown_commands(line), force=True)

        def class_bytes(dev: str, class_id: str) -> int:
            out = subprocess.run(["ip", "netns", "exec", topo.gw, "tc", "-s", "class", "show",
                                  "dev", dev, "classid", class_id],
                                 capture_output=True, text=True, check=True).stdout
            found = re.search(r"Sent (\d+) bytes", out)
            return int(found.group(1)) if found else 0

        def check(part: str) -> None:
            """The part is what it says: the runs went through its NAT, its counters,
            the measured client's own htb classes (both sides), and nothing else."""
            listing = subprocess.run(["ip", "netns", "exec", topo.gw, "nft", "list", "ruleset"],
                                     capture_output=True, text=True, check=True).stdout
            shaped = [class_bytes(dev, cid) for dev in (line.lan, line.wan)]
            counted = nft.read_counts()[1].get(client.mac)
            nat = re.search(r"counter packets (\d+) bytes \d+ masquerade", listing)
            ok = {
                "bare": not listing.strip() and shaped == [0, 0],
                "ctnat": nat is not None and int(nat.group(1)) > 0 and shaped == [0, 0],
                "table": counted is not None and min(counted.up, counted.down) > 0
                and shaped == [0, 0],
                "htb": min(shaped) > 0 and counted is None,
                "full": min(shaped) > 0 and counted is not None
                and min(counted.up, counted.down) > 0,
            }[part]
            if not ok:
                raise RuntimeError(f"the {part} part is not what it says: classes {shaped}, "
                                   f"counters {counted}, ruleset {listing[:300]!r}")

        def set_up(part: str) -> None:
            clear()
            if part == "ctnat":
                nft_text(ctnat_table(line.wan))
            elif part == "htb":
                nft_text(priority_table(client.ip, cid))
            if part in ("table", "full"):
                nft.apply(full_ruleset)
            if part in ("htb", "full"):
                shaper.setup(classes)

        bps: dict[str, dict[str, list[float]]] = {p: {d: [] for d in DIRECTIONS} for p in PARTS}
        for _ in range(args.rounds):
            for part in PARTS + PARTS[::-1]:
                set_up(part)
                for d in DIRECTIONS:
                    (rate,) = compete([(client, port)], args.seconds, congestion="cubic",
                                      download=d == "down")
                    bps[part][d].append(rate)
                check(part)
        clear()
    finally:
        topo.close()

    rounds = {
        part: {d: [(bps[part][d][2 * r] + bps[part][d][2 * r + 1])
                   / (bps["bare"][d][2 * r] + bps["bare"][d][2 * r + 1])
                   for r in range(args.rounds)] for d in DIRECTIONS}
        for part in PARTS[1:]
    }
    print(json.dumps({
        "parts": {p: {d: round(statistics.median(v), 3) for d, v in x.items()}
                  for p, x in rounds.items()},
        "rounds": {p: {d: [round(r, 3) for r in v] for d, v in x.items()}
                   for p, x in rounds.items()},
        "bps": {p: {d: [round(b) for b in v] for d, v in x.items()} for p, x in bps.items()},
        "seconds_per_iperf3": args.seconds,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
