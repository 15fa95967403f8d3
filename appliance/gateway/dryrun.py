"""The gateway's dry-run network backend: the real service on an emulated kernel and LAN.

Like the emulated line (appliance/link/emulated.py), this is a model behind the
interfaces the gateway service already talks to, so the service's own code runs
unchanged (sessions, quotas and their restore with `used`, midnight, the portal's
commands, the legal log, metrics), with no privilege and no network:

- `DryRunNft` answers `NftRunner`'s calls (`apply`, `list_table`, `read_quotas`,
  `delete_tables`). It keeps the tables as nft JSON in memory and applies each batch
  as one transaction (all or nothing, errors where the kernel gives them: a missing
  table, chain or element). It knows nothing of the telecentre's rule layout: an
  emulated packet is *evaluated* through the forward hook's base chains, generically
  (matches on meta/payload/ct fields, sets, verdict maps, jump/goto, named and
  anonymous `quota`, `limit` and `counter`, objects picked by a map such as
  `counter name ip daddr map @some_map`, and `meta|ct KEY set VALUE|map`, which later
  rules see and `last_set` records), so a quota counts what crosses it and cuts the
  packet that reaches its limit, and a device's own counters count its bytes, as the
  kernel does, whatever the rules are.
- `DryRunTc` answers `TcRunner`'s calls and keeps the batches it was given.
- `EmulatedNeighbours` answers `NeighbourLookup.mac_of` from the emulated devices.
- `Emulator` is the traffic source: emulated Wi-Fi devices (members', vouchers' and
  guests' phones and laptops, with random locally administered MACs and addresses
  from the DHCP range) that log in through the service's portal commands, browse and
  download at plausible rates; their packets go through `DryRunNft`, which moves the
  quotas and counters. One of them is "this browser": in dry-run the captive portal
  takes a visitor on the loopback (`telecentre demo`) for that device.

Chosen by `[gateway] backend = "dry-run"` (never by a test hook in a production path);
driven at run time with `telecentre gateway emulate ...` over the gateway's socket.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.gateway import ruleset as rs

log = logging.getLogger(__name__)

BACKENDS = ("kernel", "dry-run")
PACKET = 1500  # an IPv4 packet of a bulk TCP transfer, as the forward hook sees it
TICK = 1.0
INTERNET = "203.0.113.80"  # a server on the emulated internet (documentation range)
# Unit multipliers of nft's `limit` (nft's kbytes and mbytes are powers of 1024).
_UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024**2}
_PER = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0, "week": 604800.0}
_VERDICTS = ("accept", "drop", "reject", "return", "continue", "jump", "goto", "queue")
# Statements with no effect on whether a forwarded packet passes (NAT, marks, logs...).
_NO_EFFECT = ("masquerade", "snat", "dnat", "redirect", "log", "notrack",
              "xt", "set", "map", "tproxy", "synproxy", "ct helper", "dup", "fwd")


# --- nft JSON in memory -------------------------------------------------------------------


def _norm(value: Any) -> Any:
    """A value as compared: addresses parsed, MACs lower case, concatenations as tuples."""
    if isinstance(value, dict):
        if "concat" in value:
            return tuple(_norm(v) for v in value["concat"])
        if "elem" in value:  # {"elem": {"val": ..., "timeout": ...}}
            return _norm(value["elem"].get("val"))
        if "prefix" in value:
            p = value["prefix"]
            return ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False)
        if "range" in value:
            lo, hi = value["range"]
            return ("range", _norm(lo), _norm(hi))
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            return value.lower() if len(value) == 17 and value.count(":") == 5 else value
    return value


def _contains(element: Any, value: Any) -> bool:
    """Whether `value` matches one set element (a value, a prefix or a range)."""
    if isinstance(element, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address) and (
            value.version == element.version and value in element)
    if isinstance(element, tuple) and len(element) == 3 and element[0] == "range":
        try:
            return element[1] <= value <= element[2]
        except TypeError:
            return False
    return element == value


@dataclass
class _Obj:
    """A stateful object: quota (bytes/used/inv), limit (token bucket), counter."""

    kind: str
    spec: dict[str, Any]
    tokens: float = 0.0
    refilled: float = 0.0


class DryRunNft:
    """`NftRunner`'s interface over tables kept in memory as nft JSON.

    `clock` is monotonic seconds (limits refill with it). Thread-safe: the service and
    the traffic source use it at the same time.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.tables: dict[tuple[str, str], dict[str, Any]] = {}
        self.batches = 0
        # What the last `forward` set with `meta|ct KEY set ...` ("meta priority": the
        # htb class id the ruleset gives a device's packets), for tests and the curious.
        self.last_set: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._handle = 0

    # --- the runner's interface -----------------------------------------------------

    def apply(self, commands: Iterable[rs.Command]) -> list[dict[str, Any]]:
        """One transaction: applied whole, or NftError and nothing changed."""
        commands = json.loads(json.dumps(list(commands)))  # the same JSON nft would get
        with self._lock:
            work = copy.deepcopy(self.tables)
            handle = self._handle
            out: list[dict[str, Any]] = []
            try:
                for cmd in commands:
                    out += self._command(work, cmd)
            except (KeyError, ValueError, TypeError) as exc:
                self._handle = handle
                raise rs.NftError(f"dry-run: {exc}") from None
            self.tables = work
            self.batches += 1
            return out

    def list_table(self, family: str = rs.FAMILY, name: str = rs.TABLE
                   ) -> list[dict[str, Any]] | None:
        with self._lock:
            t = self.tables.get((family, name))
            return None if t is None else self._listing(family, name, t)

    def read_quotas(self) -> dict[rs.Owner, rs.QuotaReading]:
        listing = self.list_table()
        return {} if listing is None else rs.parse_quotas(listing)

    def delete_tables(self) -> None:
        with self._lock:
            for family in (rs.FAMILY, rs.BRIDGE_FAMILY):
                self.tables.pop((family, rs.TABLE), None)

    # --- commands -------------------------------------------------------------------

    def _next_handle(self) -> int:
        self._handle += 1
        return self._handle

    def _command(self, tables: dict, cmd: dict[str, Any]) -> list[dict[str, Any]]:
        if "metainfo" in cmd:
            return []
        (verb, body), = cmd.items()
        (kind, spec), = body.items()
        if kind == "table":
            key = (spec["family"], spec["name"])
            if verb in ("add", "create"):
                if key in tables and verb == "create":
                    raise ValueError(f"table {key[1]} exists")
                tables.setdefault(key, {"chains": {}, "sets": {}, "objs": {}})
            elif verb == "delete":
                del tables[key]
            elif verb == "flush":
                for chain in tables[key]["chains"].values():
                    chain["rules"] = []
                for s in tables[key]["sets"].values():
                    s["elem"] = []
            else:
                raise ValueError(f"{verb} table is not emulated")
            return []
        table = tables[(spec["family"], spec["table"])]
        if kind == "chain":
            return self._chain(table, verb, spec)
        if kind == "rule":
            return self._rule(table, verb, spec)
        if kind in ("set", "map"):
            return self._set(table, verb, kind, spec)
        if kind == "element":
            return self._element(table, verb, spec)
        if kind in ("quota", "limit", "counter"):
            return self._object(table, verb, kind, spec)
        raise ValueError(f"{verb} {kind} is not emulated")

    def _chain(self, table: dict, verb: str, spec: dict) -> list:
        name = spec["name"]
        chains = table["chains"]
        if verb in ("add", "create"):
            if name in chains:
                if verb == "create":
                    raise ValueError(f"chain {name} exists")
                chains[name]["spec"].update({k: v for k, v in spec.items() if k != "handle"})
            else:
                chains[name] = {"spec": dict(spec), "rules": [], "handle": self._next_handle()}
        elif verb == "delete":
            if chains[name]["rules"]:
                raise ValueError(f"chain {name} is not empty")
            del chains[name]
        elif verb == "flush":
            chains[name]["rules"] = []
        else:
            raise ValueError(f"{verb} chain is not emulated")
        return []

    def _rule(self, table: dict, verb: str, spec: dict) -> list:
        rules = table["chains"][spec["chain"]]["rules"]
        if verb in ("add", "insert", "create"):
            rule = {"expr": spec["expr"], "handle": self._next_handle()}
            at = [i for i, r in enumerate(rules) if r["handle"] == spec.get("handle")]
            if "handle" in spec and not at:
                raise ValueError(f"no rule with handle {spec['handle']}")
            if verb == "insert":
                rules.insert(at[0] if at else 0, rule)
            else:
                rules.insert(at[0] + 1 if at else len(rules), rule)
        elif verb in ("delete", "replace"):
            at = [i for i, r in enumerate(rules) if r["handle"] == spec.get("handle")]
            if not at:
                raise ValueError(f"no rule with handle {spec.get('handle')}")
            if verb == "delete":
                del rules[at[0]]
            else:
                rules[at[0]] = {"expr": spec["expr"], "handle": spec["handle"]}
        else:
            raise ValueError(f"{verb} rule is not emulated")
        return []

    def _set(self, table: dict, verb: str, kind: str, spec: dict) -> list:
        name = spec["name"]
        sets = table["sets"]
        if verb in ("add", "create"):
            if name in sets:
                if verb == "create":
                    raise ValueError(f"{kind} {name} exists")
            else:
                sets[name] = {"kind": kind, "spec": {k: v for k, v in spec.items()
                                                     if k != "elem"}, "elem": []}
            if spec.get("elem"):
                self._element(table, "add", {"name": name, "elem": spec["elem"]})
        elif verb == "delete":
            del sets[name]
        elif verb == "flush":
            sets[name]["elem"] = []
        else:
            raise ValueError(f"{verb} {kind} is not emulated")
        return []

    @staticmethod
    def _key(elem: Any, is_map: bool) -> Any:
        return _norm(elem[0] if is_map and isinstance(elem, list) else elem)

    def _element(self, table: dict, verb: str, spec: dict) -> list:
        s = table["sets"][spec["name"]]
        is_map = s["kind"] == "map"
        index = {self._key(e, is_map): i for i, e in enumerate(s["elem"])}
        for elem in spec["elem"]:
            key = self._key(elem, is_map)
            if verb in ("add", "create"):
                if key in index:
                    if verb == "create" or (is_map and s["elem"][index[key]] != elem):
                        raise ValueError(f"element exists in {spec['name']}")
                    continue
                index[key] = len(s["elem"])
                s["elem"].append(elem)
            elif verb == "delete":
                if key not in index:
                    raise ValueError(f"no such element in {spec['name']}")
                s["elem"][index.pop(key)] = None
            else:
                raise ValueError(f"{verb} element is not emulated")
        s["elem"] = [e for e in s["elem"] if e is not None]
        return []

    def _object(self, table: dict, verb: str, kind: str, spec: dict) -> list:
        objs = table["objs"]
        key = (kind, spec["name"])
        if verb in ("add", "create"):
            if key in objs:
                if verb == "create":
                    raise ValueError(f"{kind} {spec['name']} exists")
                obj = objs[key]
                if kind == "quota":
                    # An existing quota takes the new limit and flags; never `used`.
                    obj.spec.update(bytes=int(spec["bytes"]), inv=bool(spec.get("inv")))
                elif kind == "limit":
                    obj.spec.update({k: v for k, v in spec.items() if k != "handle"})
                return []
            fields = {k: v for k, v in spec.items() if k not in ("family", "table")}
            if kind == "quota":
                fields["bytes"] = int(fields["bytes"])
                fields["used"] = int(fields.get("used", 0))
                if fields["bytes"] <= 0 or fields["used"] < 0:
                    raise ValueError("quota bytes must be positive")
            elif kind == "counter":
                fields.setdefault("packets", 0)
                fields.setdefault("bytes", 0)
            obj = _Obj(kind, fields, refilled=self.clock())
            if kind == "limit":
                obj.tokens = _bucket(fields)[1]
            objs[key] = obj
        elif verb == "delete":
            del objs[key]
        elif verb == "reset":
            obj = objs[key]
            before = self._object_json(spec["family"], spec["table"], obj)
            if kind == "quota":
                obj.spec["used"] = 0
            elif kind == "counter":
                obj.spec.update(packets=0, bytes=0)
            return [before]
        else:
            raise ValueError(f"{verb} {kind} is not emulated")
        return []

    # --- listing, as `nft -j list table` prints it --------------------------------------

    @staticmethod
    def _object_json(family: str, table: str, obj: _Obj) -> dict[str, Any]:
        spec = dict(obj.spec)
        if obj.kind == "quota" and spec["used"] >= spec["bytes"]:
            spec["used"] = spec["bytes"]  # the kernel never reports past the limit
        return {obj.kind: {"family": family, "table": table, **spec}}

    def _listing(self, family: str, name: str, t: dict) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"metainfo": {"json_schema_version": 1, "release_name": "dry-run"}},
            {"table": {"family": family, "name": name, "handle": 0}},
        ]
        for cname, c in t["chains"].items():
            out.append({"chain": {**c["spec"], "family": family, "table": name, "name": cname,
                                  "handle": c["handle"]}})
        for sname, s in t["sets"].items():
            item = {**s["spec"], "family": family, "table": name, "name": sname}
            if s["elem"]:
                item["elem"] = copy.deepcopy(s["elem"])
            out.append({s["kind"]: item})
        for obj in t["objs"].values():
            out.append(self._object_json(family, name, obj))
        for cname, c in t["chains"].items():
            for r in c["rules"]:
                out.append({"rule": {"family": family, "table": name, "chain": cname,
                                     "handle": r["handle"], "expr": copy.deepcopy(r["expr"])}})
        return out

    # --- packets through the forward hook -------------------------------------------------

    def forward(self, packet: dict[str, Any], count: int, size: int = PACKET) -> int:
        """Send `count` packets of `size` bytes with these fields through the forward
        hook's base chains (every table, by priority); returns how many pass.

        `packet` maps "meta iifname", "payload ip saddr", "ct state"... to values.
        """
        with self._lock:
            now = self.clock()
            passing = count
            self.last_set = {}
            for table_key, chain in self._hooked("forward"):
                if passing <= 0:
                    break
                # What an earlier chain set (skb->priority...) stays with the packet.
                ctx = _Eval(self, self.tables[table_key], {**packet, **self.last_set}, size,
                            now)
                verdicts = ctx.chain(chain, passing)
                self.last_set.update(ctx.set_fields)
                policy = self.tables[table_key]["chains"][chain]["spec"].get("policy", "accept")
                passing = sum(n for v, n in verdicts if v == "accept"
                              or (v == "return" and policy == "accept"))
            return max(0, passing)

    def _hooked(self, hook: str) -> list[tuple[tuple[str, str], str]]:
        found = []
        for key, t in self.tables.items():
            if key[0] not in ("inet", "ip"):
                continue
            for cname, c in t["chains"].items():
                if c["spec"].get("hook") == hook:
                    found.append((int(c["spec"].get("prio", 0)), key, cname))
        return [(key, cname) for _prio, key, cname in sorted(found)]


def _bucket(spec: dict[str, Any]) -> tuple[float, float, bool]:
    """A limit's (refill per second, bucket size, counted in bytes?)."""
    per = _PER.get(str(spec.get("per", "second")), 1.0)
    in_bytes = "rate_unit" in spec
    unit = _UNITS.get(str(spec.get("rate_unit", "bytes")), 1) if in_bytes else 1
    rate = float(spec.get("rate", 0)) * unit / per
    burst_unit = _UNITS.get(str(spec.get("burst_unit", "bytes")), 1) if in_bytes else 1
    burst = float(spec.get("burst", 0)) * burst_unit
    return rate, rate * per + burst, in_bytes


class _Eval:
    """One evaluation of a batch of identical packets through a table's chains."""

    def __init__(self, nft: DryRunNft, table: dict, packet: dict[str, Any], size: int,
                 now: float) -> None:
        self.nft, self.table, self.size, self.now = nft, table, size, now
        self.packet = {k: _norm(v) for k, v in packet.items()}
        self.depth = 0
        self.set_fields: dict[str, Any] = {}  # what `meta|ct KEY set` statements set

    def chain(self, name: str, count: int) -> list[tuple[str, int]]:
        """[(verdict, packets)]: accept, drop, or return (fell off the chain's end)."""
        self.depth += 1
        if self.depth > 16:
            raise rs.NftError("dry-run: chain loop")
        out: list[tuple[str, int]] = []
        remaining = count
        for rule in self.table["chains"][name]["rules"]:
            if remaining <= 0:
                break
            results = self.rule(rule["expr"], remaining)
            remaining = 0
            for verdict, n in results:
                if n <= 0:
                    continue
                if verdict is None or verdict == "continue":
                    remaining += n
                elif verdict in ("accept", "drop", "return"):
                    out.append((verdict, n))
                elif verdict[0] in ("jump", "goto"):
                    for v, m in self.chain(verdict[1], n):
                        if v == "return" and verdict[0] == "jump":
                            remaining += m
                        else:
                            out.append((v, m))
        if remaining > 0:
            out.append(("return", remaining))
        self.depth -= 1
        return out

    def rule(self, exprs: Sequence[dict[str, Any]], count: int) -> list[tuple[Any, int]]:
        """Split `count` packets by what the rule does to them: None = on to the next rule."""
        out: list[tuple[Any, int]] = []
        n = count
        for expr in exprs:
            if n <= 0:
                break
            (key, arg), = expr.items()
            if key in ("quota", "limit", "counter") and isinstance(arg, dict) and "map" in arg:
                # An object picked by a map (`counter name ip saddr map @m`): no element,
                # and the rule stops here, as in the kernel.
                arg = self.lookup(arg["map"]["key"], arg["map"]["data"])
                if not isinstance(arg, str):
                    out.append((None, n))
                    return out
            if key == "match":
                if not self.match(arg):
                    out.append((None, n))
                    return out
            elif key in ("quota", "limit"):
                passing = self._stateful(key, arg, n)  # these don't match: next rule
                out.append((None, passing))
                n -= passing
            elif key == "counter":
                target = self._named("counter", arg) if isinstance(arg, str) else None
                spec = target.spec if target else (arg if isinstance(arg, dict) else None)
                if spec is None:  # `counter` with no state yet: give it some
                    spec = expr["counter"] = {"packets": 0, "bytes": 0}
                spec["packets"] = int(spec.get("packets", 0))
                spec["bytes"] = int(spec.get("bytes", 0))
                spec["packets"] = spec.get("packets", 0) + n
                spec["bytes"] = spec.get("bytes", 0) + n * self.size
            elif key == "mangle":
                if not self.mangle(arg):  # a map with no element: the rule stops
                    out.append((None, n))
                    return out
            elif key == "vmap":
                verdict = self.lookup(arg["key"], arg["data"])
                if verdict is None:
                    out.append((None, n))
                    return out
                out.append((self.verdict(verdict), n))
                return out
            elif key in _VERDICTS:
                out.append((self.verdict(expr), n))
                return out
            elif key not in _NO_EFFECT:
                log.debug("dry-run nft: statement %s has no effect here", key)
        out.append((None, n))
        return out

    @staticmethod
    def verdict(expr: dict[str, Any]) -> Any:
        (key, arg), = expr.items()
        if key in ("jump", "goto"):
            return (key, arg["target"])
        return {"reject": "drop", "queue": "drop"}.get(key, key)

    def _named(self, kind: str, name: str) -> _Obj:
        return self.table["objs"][(kind, name)]

    def _stateful(self, kind: str, arg: Any, n: int) -> int:
        """How many of `n` packets do NOT match a quota/limit expression (they go on)."""
        obj = self._named(kind, arg) if isinstance(arg, str) else None
        if obj is None:  # anonymous: its state lives in the rule itself
            arg.setdefault("_state", {})
            if kind == "quota":
                spec = arg["_state"].setdefault("spec", {
                    "bytes": int(arg.get("val", 0)) * _UNITS.get(arg.get("val_unit", "bytes"), 1),
                    "used": int(arg.get("used", 0)), "inv": bool(arg.get("inv"))})
                obj = _Obj("quota", spec)
            else:
                obj = _Obj("limit", arg, tokens=arg["_state"].get("tokens", -1.0),
                           refilled=arg["_state"].get("refilled", self.now))
                if obj.tokens < 0:
                    obj.tokens = _bucket(arg)[1]
        inv = bool(obj.spec.get("inv"))
        if kind == "quota":
            # The kernel adds each packet to `used`, then the packet that takes `used`
            # to the limit or past it is "over": with `inv`, over matches.
            limit, used = int(obj.spec["bytes"]), int(obj.spec["used"])
            under = 0 if used >= limit else min(n, max(0, -(-(limit - used) // self.size) - 1))
            obj.spec["used"] = used + n * self.size
            matching = n - under if inv else under
        else:
            rate, size, in_bytes = _bucket(obj.spec)
            obj.tokens = min(size, obj.tokens + rate * max(0.0, self.now - obj.refilled))
            obj.refilled = self.now
            cost = self.size if in_bytes else 1
            within = min(n, int(obj.tokens // cost))
            obj.tokens -= within * cost
            matching = n - within if inv else within
            if isinstance(arg, dict):
                arg["_state"].update(tokens=obj.tokens, refilled=obj.refilled)
        return n - matching

    # --- expressions -------------------------------------------------------------------

    def value(self, expr: Any) -> Any:
        if isinstance(expr, dict):
            if "concat" in expr:
                return tuple(self.value(e) for e in expr["concat"])
            if "payload" in expr:
                p = expr["payload"]
                return self.packet.get(f"payload {p.get('protocol')} {p.get('field')}")
            if "meta" in expr:
                return self.packet.get(f"meta {expr['meta']['key']}")
            if "ct" in expr:
                return self.packet.get(f"ct {expr['ct']['key']}")
            return None
        return _norm(expr)

    def elements(self, right: Any) -> list[Any] | None:
        """A set's normalized elements (keys, for a map), for "@name" or {"set": [...]}."""
        if isinstance(right, str) and right.startswith("@"):
            s = self.table["sets"][right[1:]]
            return [DryRunNft._key(e, s["kind"] == "map") for e in s["elem"]]
        if isinstance(right, dict) and "set" in right:
            return [_norm(e) for e in right["set"]]
        return None

    def match(self, m: dict[str, Any]) -> bool:
        left = self.value(m["left"])
        op = m.get("op", "==")
        members = self.elements(m["right"])
        if members is not None:
            found = left is not None and any(_contains(e, left) for e in members)
            return not found if op == "!=" else found
        right = _norm(m["right"])
        if isinstance(right, tuple) and op in ("in", "=="):  # flags: ct state in {...}
            return left in right
        if op == "in":
            op = "=="
        if left is None:
            return op == "!="
        try:
            if op == "==":
                return _contains(right, left)
            if op == "!=":
                return not _contains(right, left)
            return {"<": left < right, ">": left > right, "<=": left <= right,
                    ">=": left >= right}[op]
        except (TypeError, KeyError):
            return False

    def mangle(self, arg: dict[str, Any]) -> bool:
        """`meta priority set 1:1014`, `meta priority set ip daddr map @m` and the like: the
        field takes the value (a map's, if it is one), and later rules and chains see it.
        False when a map has no element for the packet (the kernel ends the rule there,
        nothing set)."""
        field = self._field_name(arg.get("key"))
        value = arg.get("value")
        if isinstance(value, dict) and "map" in value:
            value = self.lookup(value["map"]["key"], value["map"]["data"])
            if value is None:
                return False
        else:
            value = self.value(value)
        if field is not None:  # a payload rewrite (not emulated) changes no verdict here
            self.packet[field] = _norm(value)
            self.set_fields[field] = value
        return True

    @staticmethod
    def _field_name(expr: Any) -> str | None:
        if isinstance(expr, dict) and "meta" in expr:
            return f"meta {expr['meta']['key']}"
        if isinstance(expr, dict) and "ct" in expr:
            return f"ct {expr['ct']['key']}"
        return None

    def lookup(self, key: Any, data: Any) -> Any:
        wanted = self.value(key)
        if isinstance(data, str) and data.startswith("@"):
            entries = self.table["sets"][data[1:]]["elem"]
        else:
            entries = data.get("set", []) if isinstance(data, dict) else []
        for entry in entries:
            if isinstance(entry, list) and len(entry) == 2 and _contains(_norm(entry[0]),
                                                                       wanted):
                return entry[1]
        return None


class DryRunTc:
    """`TcRunner`'s interface: keeps what it was asked to do; nothing reaches a kernel."""

    def __init__(self, leaf: str = "fq_codel") -> None:
        self.leaf = leaf
        self.commands: deque[list[str]] = deque(maxlen=10_000)  # the latest, for tests

    def batch(self, commands: Iterable[Sequence[str]], *, force: bool = False) -> None:
        self.commands += [list(c) for c in commands]

    def probe_leaf(self, dev: str, *others: str) -> Any:
        from appliance.gateway.shaping import DEFAULT_FRAME, Leaf

        for d in (dev, *others):
            rs.check_ifname(d)
        return Leaf(self.leaf, None if self.leaf == "cake" else DEFAULT_FRAME)


# --- the emulated LAN: devices, their traffic, the neighbour table --------------------------

ROLES = ("guest", "voucher", "member", "visitor")
BROWSER = "browser"
# Typical demand in Mbit/s (down, up), drawn around these for each device: a member
# on a video call or syncing files, a guest browsing, a visitor at the portal.
PROFILES = {
    "member": ((0.5, 3.0), (0.1, 0.4)),
    "voucher": ((0.3, 2.0), (0.05, 0.2)),
    "guest": ((0.3, 2.0), (0.05, 0.2)),
    "visitor": ((0.2, 1.0), (0.02, 0.1)),
    BROWSER: ((1.0, 3.0), (0.05, 0.2)),
}
MAX_ADD = 20
HOSTNAMES = ("iPhone", "Galaxy-A54", "MacBook-Air", "DESKTOP-7QK2M1", "Pixel-7", "iPad",
             "ThinkPad-T14", "Redmi-Note-12", "LAPTOP-3HF9S0", "android-4c1e")
WAN_PEER_MAC = "02:00:5e:00:53:01"  # the ISP box's side, as the LAN packets come back


def browser_address(config: Any) -> str:
    """The LAN address of "this browser": the first address DHCP hands out."""
    from appliance.gateway.dnsmasq import dhcp_range

    return str(dhcp_range(config)[0])


def portal_peer(config: Any, remote_addr: str) -> str:
    """The LAN address the portal should ask the gateway about for this request.

    Only in dry-run: a browser on the loopback (someone trying `telecentre demo`) is
    the emulated "this browser" device on the Wi-Fi. With the kernel backend the
    portal always uses the socket's peer address as it is.
    """
    if config.gateway.backend != "dry-run":
        return remote_addr
    try:
        if ipaddress.ip_address(remote_addr).is_loopback:
            return browser_address(config)
    except ValueError:
        pass
    return remote_addr


@dataclass
class EmulatedDevice:
    """A phone or laptop on the emulated Wi-Fi."""

    name: str
    mac: str
    ip: str
    role: str
    down_mbit: float  # what it asks for on average (browsing, calls)
    up_mbit: float
    want_bytes: int = 0  # a download in progress: bytes still to fetch
    bytes_down: int = 0  # what crossed the gateway (passed by the ruleset)
    bytes_up: int = 0
    rate_down: float = 0.0  # bytes per second over the last tick
    rate_up: float = 0.0
    stalled: int = 0  # ticks where the gateway dropped everything (TCP backs off)
    hostname: str = ""  # what it says in DHCP (data only)

    def view(self, authorized: dict[str, str]) -> dict[str, Any]:
        return {
            "name": self.name, "mac": self.mac, "ip": self.ip, "role": self.role,
            "logged_in_as": authorized.get(self.mac),
            "demand_down_mbit": round(self.down_mbit, 2), "demand_up_mbit": round(self.up_mbit, 2),
            "downloading_bytes": self.want_bytes,
            "bytes_down": self.bytes_down, "bytes_up": self.bytes_up,
            "rate_down_bps": round(self.rate_down * 8), "rate_up_bps": round(self.rate_up * 8),
            "blocked": self.stalled > 0,
        }


class EmulatedNeighbours:
    """`NeighbourLookup.mac_of` over the emulated devices (the LAN's ARP table)."""

    def __init__(self, emulator: Emulator, network: ipaddress.IPv4Network) -> None:
        self.emulator = emulator
        self.network = network

    def mac_of(self, ip: str) -> str | None:
        addr = rs.parse_ipv4(ip)
        if addr not in self.network or addr in (self.network.network_address,
                                                self.network.broadcast_address):
            return None
        return self.emulator.mac_at(str(addr))


class EmulatedPresence:
    """`ArpProber.probe` and `LeaseFile.current` over the emulated devices: a device that
    left (`gateway emulate remove`) stops answering, and its session ends as "left"
    after `absent_after_seconds`, by the service's own presence code."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def probe(self, targets: Iterable[tuple[str, Any]]) -> set[str]:
        with self.emulator._lock:
            here = {(d.mac, d.ip) for d in self.emulator.devices.values()}
        return {mac for mac, ip in targets if (mac, str(ip)) in here}

    def current(self, now: float | None = None) -> dict[str, Any]:
        from appliance.gateway.presence import Lease

        with self.emulator._lock:
            return {d.mac: Lease(d.mac, ipaddress.IPv4Address(d.ip), d.hostname, 0.0)
                    for d in self.emulator.devices.values()}


class Emulator:
    """Emulated devices that log in through the service and send traffic through the
    dry-run ruleset, once a `tick` (a thread calls it every second after `start`)."""

    def __init__(self, config: Any, nft: DryRunNft, *, seed: str | None = None,
                 tick: float = TICK) -> None:
        from appliance.gateway.dnsmasq import dhcp_range

        g = config.gateway
        self.config = config
        self.nft = nft
        self.lan, self.wan = g.lan_interface, g.wan_interface
        self.network = ipaddress.IPv4Interface(g.lan_address).network
        first, last = dhcp_range(config)
        self.pool = [str(ipaddress.IPv4Address(a)) for a in range(int(first), int(last) + 1)]
        self.line_down = g.line_down_mbit * 1e6 / 8
        self.line_up = g.line_up_mbit * 1e6 / 8
        # The same "random" addresses at every start: devices restored by the service
        # after a restart are found again.
        self.rng = random.Random(seed or f"telecentre dry-run|{config.site_name}")
        self.service: Any = None
        self.devices: dict[str, EmulatedDevice] = {}
        self.interval = tick
        self._lock = threading.RLock()
        self._counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.neighbours = EmulatedNeighbours(self, self.network)
        self.presence = EmulatedPresence(self)
        self._join(BROWSER, BROWSER, ip=browser_address(config))

    # --- devices ----------------------------------------------------------------------

    def _new_mac(self) -> str:
        used = {d.mac for d in self.devices.values()}
        while True:
            octets = [self.rng.randrange(256) for _ in range(6)]
            octets[0] = (octets[0] & 0xFC) | 0x02  # unicast, locally administered (random)
            mac = ":".join(f"{o:02x}" for o in octets)
            if mac not in used:
                return mac

    def _new_ip(self) -> str:
        used = {d.ip for d in self.devices.values()}
        if self.service is not None:
            used |= {str(d.ip) for d in list(self.service.devices.values())}
        for ip in self.pool:
            if ip not in used:
                return ip
        raise ValueError("no address left in the DHCP range")

    def _join(self, name: str, role: str, *, ip: str | None = None, mac: str | None = None
              ) -> EmulatedDevice:
        (dlo, dhi), (ulo, uhi) = PROFILES[role]
        device = EmulatedDevice(
            name, mac or self._new_mac(), ip or self._new_ip(), role,
            round(self.rng.uniform(dlo, dhi), 2), round(self.rng.uniform(ulo, uhi), 2),
            hostname="demo-browser" if role == BROWSER else self.rng.choice(HOSTNAMES),
        )
        self.devices[name] = device
        return device

    def _name(self, role: str) -> str:
        n = self._counts.get(role, 0) + 1
        while f"{role}-{n}" in self.devices:
            n += 1
        self._counts[role] = n
        return f"{role}-{n}"

    def mac_at(self, ip: str) -> str | None:
        with self._lock:
            for d in self.devices.values():
                if d.ip == ip:
                    return d.mac
        return None

    def attach(self, service: Any) -> None:
        """Take the service's restored devices as emulated devices still on the Wi-Fi."""
        with self._lock:
            self.service = service
            known = {d.mac for d in self.devices.values()}
            for dev in sorted(service.devices.values(),
                              key=lambda d: (d.owner.kind, d.owner.id, d.mac)):
                if dev.mac in known:
                    continue
                ip = str(dev.ip)
                for d in [d for d in self.devices.values() if d.ip == ip]:
                    del self.devices[d.name]  # a restored binding wins over a fresh device
                self._join(BROWSER if ip == browser_address(self.config) else
                           self._name(dev.owner.kind), dev.owner.kind, ip=ip, mac=dev.mac)

    def add(self, role: str, count: int = 1, owner: str | None = None) -> list[EmulatedDevice]:
        """Devices join the Wi-Fi and (but visitors) log in through the portal's command."""
        if role not in ROLES:
            raise ValueError(f"role: expected one of {', '.join(ROLES)}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_ADD:
            raise ValueError(f"count: expected 1 to {MAX_ADD}")
        added = []
        for _ in range(count):
            with self._lock:
                device = self._join(self._name(role), role)
            added.append(device)
            if role != "visitor":
                try:
                    self.login(device.name, role, owner)
                except ValueError:
                    with self._lock:
                        self.devices.pop(device.name, None)
                    raise
        return added

    def _device(self, name: str) -> EmulatedDevice:
        device = self.devices.get(name)
        if device is None:
            raise ValueError(f"no emulated device {name!r} (see `gateway emulate status`)")
        return device

    def login(self, name: str, kind: str, owner: str | None = None) -> dict[str, Any]:
        """Log a device in as a guest, a voucher or a member, as the portal would."""
        device = self._device(name)
        req: dict[str, Any] = {"kind": kind, "ip": device.ip}
        if kind == "member":
            req["owner_id"] = self._member(owner)
        elif kind == "voucher":
            req["owner_id"] = self._voucher(owner)
        elif kind != "guest":
            raise ValueError("kind: expected guest, voucher or member")
        reply = self.service.cmd_portal_authorize(req)
        if not reply.get("ok"):
            raise ValueError(f"the gateway refused the login: {reply.get('error')}")
        return reply

    def _member(self, ref: str | None) -> int:
        from appliance import members

        with self.service._lock:
            conn = self.service.conn
            if ref:
                row = members.find_member(conn, str(ref))
                if row is None:
                    raise ValueError(f"no member {ref!r}")
                return int(row["id"])
            rows = conn.execute(
                "SELECT id FROM members WHERE active = 1 AND suspended = 0 ORDER BY id"
            ).fetchall()
        if not rows:
            raise ValueError("no member to log in as: add a member in the panel first")
        busy = {dev.owner.id for dev in list(self.service.devices.values())
                if dev.owner.kind == "member"}
        free = [r["id"] for r in rows if r["id"] not in busy]
        return int((free or [r["id"] for r in rows])[0])

    def _voucher(self, code: str | None) -> int:
        from appliance import wifi_accounts

        if code:
            with self.service._lock:
                found = wifi_accounts.find_voucher(self.service.conn, str(code), time.time())
            if found is None:
                raise ValueError("unknown, expired or revoked voucher code")
            return int(found)
        quota = min(self.config.gateway.guest.daily_quota_mb, 1_000_000)
        _batch, _until, made = self.service.create_vouchers(
            count=1, quota_mb=quota, max_devices=1, valid_days=1,
            batch="Émulation / emulation", created_by="dry-run",
        )
        return made[0][0]

    def remove(self, name: str) -> list[str]:
        """Devices leave the Wi-Fi: they stop answering the service's presence probes,
        which ends their sessions ("left") after `absent_after_seconds`."""
        with self._lock:
            names = [n for n in self.devices if n != BROWSER] if name == "all" else [name]
            for n in names:
                self._device(n)
                if n == BROWSER:
                    raise ValueError("the browser you use the portal with stays on the Wi-Fi")
                del self.devices[n]
        return names

    # --- traffic ----------------------------------------------------------------------

    def _caps(self, device: EmulatedDevice) -> tuple[float, float]:
        """Bytes per second its class's shaping lets it have (the line when unknown)."""
        from appliance.gateway.quotas import owner_class

        dev = self.service.devices.get(device.mac) if self.service is not None else None
        if dev is None:
            return self.line_down, self.line_up
        policy = self.service.policies[owner_class(dev.owner)]
        return (min(self.line_down, policy.down_kbit * 125.0),
                min(self.line_up, policy.up_kbit * 125.0))

    @staticmethod
    def _share(offers: dict[str, float], capacity: float) -> dict[str, float]:
        """Fair shares of the line (water-filling): small demands in full, the rest split."""
        out: dict[str, float] = {}
        left = capacity
        pending = sorted(offers.items(), key=lambda kv: kv[1])
        while pending:
            fair = left / len(pending)
            name, want = pending.pop(0)
            out[name] = min(want, fair)
            left -= out[name]
        return out

    def tick(self, dt: float = TICK) -> None:
        """One step of every device's traffic through the ruleset."""
        with self._lock:
            devices = list(self.devices.values())
            down: dict[str, float] = {}
            up: dict[str, float] = {}
            for d in devices:
                cap_down, cap_up = self._caps(d)
                if d.stalled >= 2:  # nothing got through: TCP retries slowly
                    want_down, want_up = 0.0, 2.0 * PACKET / dt
                elif d.want_bytes > 0:
                    want_down = cap_down
                    want_up = max(d.up_mbit * 125_000.0, cap_down * 0.02)
                else:
                    jitter = self.rng.uniform(0.4, 1.6)
                    want_down = d.down_mbit * 125_000.0 * jitter
                    want_up = d.up_mbit * 125_000.0 * jitter
                down[d.name] = min(want_down, cap_down)
                up[d.name] = min(want_up, cap_up)
            down = self._share(down, self.line_down)
            up = self._share(up, self.line_up)
            for d in devices:
                self._send(d, up[d.name] * dt, down[d.name] * dt, dt)

    def _send(self, d: EmulatedDevice, up_bytes: float, down_bytes: float, dt: float) -> None:
        n_up = -(-int(up_bytes) // PACKET)
        if n_up <= 0:
            d.rate_down = d.rate_up = 0.0
            return
        common = {"meta nfproto": "ipv4", "meta protocol": "ip", "meta l4proto": "tcp",
                  "payload ip protocol": "tcp", "ct state": "established"}
        passed_up = self.nft.forward({
            **common, "meta iifname": self.lan, "meta oifname": self.wan,
            "payload ether saddr": d.mac, "payload ip saddr": d.ip,
            "payload ip daddr": INTERNET, "payload tcp sport": 40000,
            "payload tcp dport": 443, "payload th dport": 443, "ct direction": "original",
        }, n_up)
        passed_down = 0
        n_down = int(down_bytes) // PACKET
        if passed_up and n_down:
            passed_down = self.nft.forward({
                **common, "meta iifname": self.wan, "meta oifname": self.lan,
                "payload ether saddr": WAN_PEER_MAC, "payload ip saddr": INTERNET,
                "payload ip daddr": d.ip, "payload tcp sport": 443,
                "payload tcp dport": 40000, "payload th dport": 40000,
                "ct direction": "reply",
            }, n_down)
        d.stalled = 0 if passed_up else d.stalled + 1
        d.bytes_up += passed_up * PACKET
        d.bytes_down += passed_down * PACKET
        d.rate_up, d.rate_down = passed_up * PACKET / dt, passed_down * PACKET / dt
        if d.want_bytes:
            d.want_bytes = max(0, d.want_bytes - passed_down * PACKET)

    def start(self) -> Emulator:
        self._thread = threading.Thread(target=self._run, name="gateway-dry-run", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            try:
                self.tick(min(now - last, 5 * self.interval))
            except Exception:  # the emulation must outlive one bad step
                log.exception("dry-run traffic step failed")
            last = now

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the socket's `emulate` command -----------------------------------------------

    def state(self) -> dict[str, Any]:
        authorized = {}
        if self.service is not None:
            authorized = {m: f"{d.owner.kind} #{d.owner.id}"
                          for m, d in list(self.service.devices.items())}
        with self._lock:
            return {"backend": "dry-run",
                    "devices": [d.view(authorized) for d in self.devices.values()]}

    def command(self, req: dict[str, Any]) -> dict[str, Any]:
        """status | add ROLE [count, owner] | remove NAME|all | login NAME KIND [owner] |
        logout NAME | download NAME MB | rate NAME DOWN UP | idle NAME."""
        action = req.get("action")
        try:
            name = str(req.get("name") or "")
            if action == "add":
                count = req.get("count", 1)
                owner = req.get("owner")
                self.add(str(req.get("role")), count, None if owner is None else str(owner))
            elif action == "remove":
                self.remove(name)
            elif action == "login":
                owner = req.get("owner")
                self.login(name, str(req.get("kind")), None if owner is None else str(owner))
            elif action == "logout":
                self.service.cmd_portal_logout({"ip": self._device(name).ip})
            elif action == "download":
                mb = req.get("mb")
                if isinstance(mb, bool) or not isinstance(mb, int | float) or not 0 < mb <= 1e6:
                    raise ValueError("download: give megabytes, from 1 to 1000000")
                with self._lock:
                    self._device(name).want_bytes += int(mb * 1_000_000)
            elif action in ("rate", "idle"):
                rates = [0.0, 0.0] if action == "idle" else [req.get("down_mbit"),
                                                             req.get("up_mbit")]
                for r in rates:
                    if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r <= 1000:
                        raise ValueError("rate: give Mbit/s down and up, from 0 to 1000")
                with self._lock:
                    d = self._device(name)
                    d.down_mbit, d.up_mbit = float(rates[0]), float(rates[1])
                    if action == "idle":
                        d.want_bytes = 0
            elif action != "status":
                raise ValueError("action: expected status, add, remove, login, logout, "
                                 "download, rate or idle")
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **self.state()}


class DryRun:
    """The gateway service on the dry-run backend: what `telecentre gateway` and
    `telecentre demo` run when `[gateway] backend = "dry-run"`."""

    def __init__(self, config: Any, *, registry: Any = None, tick: float = TICK,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if config.gateway.backend != "dry-run":
            raise ValueError('the dry-run backend needs [gateway] backend = "dry-run"')
        self.config = config
        self.registry = registry
        self.nft = DryRunNft(clock)
        self.tc = DryRunTc()
        self.emulator = Emulator(config, self.nft, tick=tick)
        self.service: Any = None

    def start(self, *, traffic: bool = True) -> DryRun:
        from appliance.gateway.service import GatewayService
        from appliance.gateway.shaping import Shaper, line_from_config
        from appliance.ipc import CommandServer

        g = self.config.gateway
        shaper = None
        if g.shaping:
            shaper = Shaper(line_from_config(g), self.tc, lan_is_bridge=g.lan_is_bridge)
        self.service = GatewayService(
            self.config, self.nft, registry=self.registry, shaper=shaper,
            neighbours=self.emulator.neighbours, prober=self.emulator.presence,
            leases=self.emulator.presence,
        )
        # The kernel has nothing after a start here (like after a reboot): the service
        # restores every quota from the database with `used`.
        self.service.start(socket=False)
        self.emulator.attach(self.service)
        self.service.server = CommandServer(
            self.config.gateway_socket,
            {**self.service.handlers(), "emulate": self.emulator.command},
        ).start()
        if traffic:
            self.emulator.start()
        log.info("gateway on the dry-run backend: no packet leaves this process")
        return self

    def stop(self) -> None:
        self.emulator.stop()
        if self.service is not None:
            self.service.stop()
