"""The gateway service: owns `inet telecentre`, the devices' sessions and the quotas.

The kernel enforces (nftables quotas, exact to a packet); this service decides who is
authorized, keeps the day's counts in SQLite (every `persist_seconds`, at most 60 s)
so a restart or a reboot restores them with `used`, and resets them at local
midnight. Commands (authorize, kick, extend, reset, status) arrive over a UNIX
socket from the web service; nothing is replayed from a table.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import sqlite3
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from appliance import db, wifi_accounts, wifilog
from appliance.config import Config, WifiClass
from appliance.gateway import quotas as qm
from appliance.gateway import ruleset as rs
from appliance.gateway import shaping as sh
from appliance.gateway.lan import Lan, LanError
from appliance.gateway.neighbours import NeighbourError, NeighbourLookup
from appliance.gateway.presence import ArpProber, LeaseFile
from appliance.ipc import CommandServer
from appliance.sdnotify import notify

log = logging.getLogger(__name__)

CLASSES = ("guest", "voucher", "member")
PURGE_EVERY = 3600.0  # the legal log's retention is counted in days: hourly is plenty
# How soon a spent "block" owner's HTTP meets the quota-reached page (one nft read).
SPENT_CHECK_SECONDS = 5.0
LAN_RETRY_SECONDS = 30  # a LAN interface not there at start (a late Wi-Fi driver)
# Bounds on an admin's voucher batch: a sheet of paper, not a way to fill the disk.
VOUCHER_BATCH_MAX = 200
VOUCHER_DEVICES_MAX = 10
VOUCHER_DAYS_MAX = 366
VOUCHER_QUOTA_MB_MAX = 1_000_000
BATCH_LABEL_MAX = 60


class GatewayMetrics:
    """About the site's Wi-Fi, never about a person: no MAC, IP or name in any label."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.devices = Gauge(
            "telecentre_wifi_devices", "Authorized devices by class.", ["class"], registry=registry
        )
        self.exhausted = Gauge(
            "telecentre_wifi_quotas_exhausted",
            "Quotas spent today, by class.",
            ["class"],
            registry=registry,
        )
        self.bytes = Counter(
            "telecentre_wifi_bytes",
            "Bytes through the gateway (the devices' kernel counters), by class and "
            "direction (up, down).",
            ["class", "direction"],
            registry=registry,
        )
        self.authorizations = Counter(
            "telecentre_wifi_authorizations",
            "Device authorizations by class and result.",
            ["class", "result"],
            registry=registry,
        )
        self.nft_errors = Counter(
            "telecentre_wifi_nft_errors", "nft transactions refused.", registry=registry
        )
        self.tc_errors = Counter(
            "telecentre_wifi_tc_errors", "Shaping changes tc refused.", registry=registry
        )
        self.neigh_errors = Counter(
            "telecentre_wifi_neighbour_errors",
            "Neighbour entries (IP to MAC pins) ip refused to set or remove.",
            registry=registry,
        )
        self.sessions_ended = Counter(
            "telecentre_wifi_sessions_ended",
            "Device sessions ended by the gateway on its own, by reason (left, expired).",
            ["reason"],
            registry=registry,
        )
        self.probe_errors = Counter(
            "telecentre_wifi_presence_probe_errors",
            "ARP presence rounds that could not run (nobody is called absent then).",
            registry=registry,
        )
        self.leases = Gauge(
            "telecentre_wifi_leases", "Live DHCP leases on the LAN.", registry=registry
        )
        for reason in ("left", "expired"):
            self.sessions_ended.labels(reason)
        for c in CLASSES:
            self.devices.labels(c)
            self.exhausted.labels(c)
            for direction in ("up", "down"):
                self.bytes.labels(c, direction)


def _policy(wc: WifiClass) -> qm.ClassPolicy:
    return qm.ClassPolicy(
        daily_quota_bytes=wc.daily_quota_mb * 1_000_000,
        down_kbit=int(wc.down_mbit * 1000),
        up_kbit=int(wc.up_mbit * 1000),
        when_spent=wc.when_spent,
    )


def network_from_config(config: Config) -> rs.Network:
    g = config.gateway
    return rs.Network(
        lan=g.lan_interface,
        wan=g.wan_interface,
        lan_address=ipaddress.IPv4Interface(g.lan_address),
        portal_port=g.portal_port,
        portal_tls_port=g.portal_tls_port if g.portal_url.startswith("https://") else None,
        blocked=tuple(ipaddress.IPv4Network(n) for n in g.blocked_networks),
        lan_is_bridge=g.lan_is_bridge,
    )


class GatewayService:
    """Sessions and quotas over an `NftRunner` (pass a runner for a namespace in tests)."""

    def __init__(
        self,
        config: Config,
        nft: rs.NftRunner,
        *,
        registry: CollectorRegistry | None = None,
        wall: Callable[[], float] = time.time,
        neighbours: NeighbourLookup | None = None,
        shaper: sh.Shaper | None = None,
        prober: ArpProber | None = None,
        leases: LeaseFile | None = None,
        lan: Lan | None = None,
    ) -> None:
        self.config = config
        self.nft = nft
        self.shaper = shaper
        self.wall = wall
        self.net = network_from_config(config)
        self.neighbours = neighbours or NeighbourLookup(
            self.net.lan, self.net.lan_address.network
        )
        self.policies = {
            "guest": _policy(config.gateway.guest),
            "member": _policy(config.gateway.member),
        }
        self.registry = registry or CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.conn = db.open_db(config.db_path)
        self._lock = threading.RLock()
        self.ledgers: dict[rs.Owner, qm.Ledger] = {}
        self.devices: dict[str, rs.Device] = {}  # by MAC
        self.day = qm.local_day(wall(), config.tz)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.server: CommandServer | None = None
        self.last_persist = 0.0
        self._last_purge = 0.0
        # Each open session's bytes as last read from the kernel (by MAC), the reading
        # its current rate comes from, and that rate (down, up bit/s).
        self.counted: dict[str, rs.DeviceBytes] = {}
        self._rate_samples: dict[str, qm.RateSample] = {}
        self.rates: dict[str, tuple[int, int]] = {}
        # Presence: ARP probes of the authorized devices (None: nobody is ever "left").
        self.prober = prober
        self.lease_file = leases or LeaseFile(config.gateway.lease_file)
        self.last_seen: dict[str, float] = {}  # by MAC, on the injected clock
        self._last_probe = 0.0
        self.spent_marked: dict[str, rs.Device] = {}  # by MAC: what spent4 holds
        self._last_spent_check = 0.0
        # The LAN's address and the kernel's forwarding (None: the caller manages them).
        self.lan = lan
        self.lan_state: dict[str, Any] | None = None
        self._last_lan_try = 0.0

    # --- lifecycle ------------------------------------------------------------------

    def start(self, *, socket: bool = True, loop: bool = True) -> GatewayService:
        self.prepare_lan()
        self.restore()
        if socket:
            self.server = CommandServer(self.config.gateway_socket, self.handlers()).start()
        if loop:
            self._thread = threading.Thread(target=self.run, name="gateway-loop", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Save the counts; the table stays so devices keep working across a restart."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.server is not None:
            self.server.stop()
        try:
            self.persist()
        finally:
            self.conn.close()

    def run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.step()
            except Exception as exc:  # the loop must outlive one failed nft call
                # Where it failed, not the message: nft's, tc's or a parser's text may
                # carry a client's address, and ordinary logs hold none.
                log.error("gateway loop step failed (%s)\n%s", type(exc).__name__,
                          "".join(traceback.format_tb(exc.__traceback__)).rstrip())

    def step(self) -> None:
        """One turn: midnight reset when the local day changed; persist when due."""
        now = self.wall()
        if qm.local_day(now, self.config.tz) != self.day:
            self.new_day()
        if now - self.last_persist >= self.config.gateway.persist_seconds:
            self.persist()
        if now - self._last_purge >= PURGE_EVERY:
            self.purge_sessions(now)
        self.expire_vouchers(now)
        if now - self._last_spent_check >= SPENT_CHECK_SECONDS:
            self._last_spent_check = now
            self.check_spent()
        if now - self._last_probe >= self.config.gateway.presence_interval_seconds:
            self.check_presence(now)
        if self.lan is not None and not self.lan_ready and (
                now - self._last_lan_try >= LAN_RETRY_SECONDS):
            self.prepare_lan()
            if self.lan_ready:
                with self._lock:  # the socket's handlers change the devices meanwhile
                    self._shape_all()  # the interface came late: its queues too
        notify("WATCHDOG=1")

    @property
    def lan_ready(self) -> bool:
        return bool(self.lan_state and self.lan_state["ready"])

    def prepare_lan(self) -> None:
        """The box's address on the LAN (a bridge made if it is one), and whether the
        kernel forwards. A LAN interface that is missing (a Wi-Fi adapter not there yet)
        is retried every LAN_RETRY_SECONDS; the rules are in place meanwhile."""
        if self.lan is None:
            return
        self._last_lan_try = self.wall()
        was_ready = self.lan_ready
        try:
            state = self.lan.prepare()
        except (LanError, OSError, subprocess.SubprocessError) as exc:
            if (self.lan_state or {}).get("error") != str(exc):  # once, not every retry
                log.error("LAN not ready: %s (retried every %d s)", exc, LAN_RETRY_SECONDS)
            self.lan_state = {"ready": False, "interface": self.lan.interface,
                              "error": str(exc)}
            return
        self.lan_state = {"ready": True, **state.as_dict()}
        if not was_ready:
            log.info("LAN %s up at %s", state.interface, state.address)
        if not state.forwarding:
            log.error("IP forwarding is off (net.ipv4.ip_forward = 0): logged-in devices "
                      "reach the portal but not the internet; the image turns it on in "
                      "/usr/lib/sysctl.d/60-telecentre.conf")

    # --- state ----------------------------------------------------------------------

    def _default_limit(self, owner: rs.Owner) -> int:
        if owner.kind == "voucher":
            row = self.conn.execute(
                "SELECT quota_bytes FROM vouchers WHERE id = ?", (owner.id,)
            ).fetchone()
            if row is None:
                raise ValueError(f"no voucher #{owner.id}")
            return int(row[0])
        return self.policies[qm.owner_class(owner)].daily_quota_bytes

    def _new_ledger(self, owner: rs.Owner) -> qm.Ledger:
        policy = self.policies[qm.owner_class(owner)]
        return qm.new_ledger(owner, self.day, policy, self._default_limit(owner))

    def restore(self) -> None:
        """Rebuild the table from the database and whatever the kernel still counts."""
        with self._lock:
            self.day = qm.local_day(self.wall(), self.config.tz)
            stored = [
                qm.Ledger(
                    rs.Owner(r["owner_kind"], r["owner_id"]),
                    dt.date.fromisoformat(r["day"]),
                    r["limit_bytes"],
                    r["used_bytes"],
                    r["policy"],
                    r["base_bytes"],
                )
                for r in self.conn.execute("SELECT * FROM wifi_quotas")
            ]
            kernel, kernel_bytes = rs.read_counts(self.nft)
            self.ledgers = {ledger.owner: ledger for ledger in qm.restore(stored, kernel, self.day)}
            self.devices = {}
            self.counted = {}
            for r in self.conn.execute(
                "SELECT owner_kind, owner_id, mac, ip, bytes_up, bytes_down FROM wifi_sessions "
                "WHERE ended_at IS NULL"
            ):
                owner = rs.Owner(r["owner_kind"], r["owner_id"])
                device = rs.Device.parse(r["mac"], r["ip"], owner)
                if owner not in self.ledgers:
                    self.ledgers[owner] = self._new_ledger(owner)
                self.devices[device.mac] = device
                self.counted[device.mac] = qm.restore_counted(
                    rs.DeviceBytes(r["bytes_up"], r["bytes_down"]),
                    kernel_bytes.get(device.mac),
                )
            self._apply(
                rs.full_ruleset(
                    self.net, [x.quota() for x in self.ledgers.values()], self.devices.values(),
                    self.counted,
                )
            )
            self._rate_samples = {}
            self.rates = {}
            self.spent_marked = {}  # the new table's spent4 set is empty
            self._save_counted()
            self._save_ledgers()
            self._update_gauges()
            self._shape_all()
            now = self.wall()
            for d in self.devices.values():
                self._pin(d)
                self.last_seen[d.mac] = now
            log.info(
                "gateway table loaded: %d quotas, %d devices", len(self.ledgers), len(self.devices)
            )

    def _apply(self, commands: list[rs.Command]) -> list[dict[str, Any]]:
        try:
            return self.nft.apply(commands)
        except rs.NftError:
            self.metrics.nft_errors.inc()
            raise

    def _save_ledgers(self, owners: list[rs.Owner] | None = None) -> None:
        now = self.wall()
        rows = [
            (
                x.owner.kind,
                x.owner.id,
                x.day.isoformat(),
                x.limit_bytes,
                x.used_bytes,
                x.base_bytes,
                x.policy,
                now,
            )
            for o, x in self.ledgers.items()
            if owners is None or o in owners
        ]
        with db.transaction(self.conn):
            if owners is None:
                self.conn.execute("DELETE FROM wifi_quotas")
            self.conn.executemany(
                "INSERT OR REPLACE INTO wifi_quotas (owner_kind, owner_id, day, limit_bytes, "
                "used_bytes, base_bytes, policy, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _observe_devices(self, kernel: dict[str, rs.DeviceBytes]) -> None:
        """Take the kernel's per-device bytes: metrics by class and direction, rates."""
        now = time.monotonic()
        for mac, device in self.devices.items():
            reading = kernel.get(mac)
            if reading is None:
                continue
            before = self.counted.get(mac, rs.DeviceBytes())
            for direction, delta in (("up", reading.up - before.up),
                                     ("down", reading.down - before.down)):
                if delta > 0:
                    self.metrics.bytes.labels(device.owner.kind, direction).inc(delta)
            self.counted[mac] = reading
            sample = qm.RateSample(now, reading)
            last = self._rate_samples.get(mac)
            rate = None if last is None else qm.rate_bps(last, sample)
            if last is None or rate is not None:
                self._rate_samples[mac] = sample
            if rate is not None:
                self.rates[mac] = rate

    def _read_devices(self) -> None:
        """Refresh the devices' bytes from the kernel (the quotas are left as they are)."""
        _quotas, kernel = rs.read_counts(self.nft)
        self._observe_devices(kernel)

    def _save_counted(self) -> None:
        """The open sessions' bytes into the legal log (each direction only grows)."""
        rows = [(c.up, c.down, mac) for mac, c in self.counted.items() if mac in self.devices]
        with db.transaction(self.conn):
            self.conn.executemany(
                "UPDATE wifi_sessions SET bytes_up = max(bytes_up, ?), "
                "bytes_down = max(bytes_down, ?) WHERE mac = ? AND ended_at IS NULL",
                rows,
            )

    def persist(self) -> None:
        """Read the kernel's counters, count bytes by class, save the day's ledgers."""
        with self._lock:
            readings, kernel_bytes = rs.read_counts(self.nft)
            for owner, ledger in list(self.ledgers.items()):
                self.ledgers[owner] = qm.observe(ledger, readings.get(owner))
            self._observe_devices(kernel_bytes)
            try:
                self._save_ledgers()
                self._save_counted()
            except sqlite3.Error as exc:
                log.error("quota counts not saved (%s); will retry", exc)
                return
            self.last_persist = self.wall()
            self._update_gauges()

    def new_day(self) -> None:
        """Local midnight: every counter back to zero, every limit back to its default."""
        with self._lock:
            self.persist()
            day = qm.local_day(self.wall(), self.config.tz)
            fresh = {o: qm.new_day(x, day, self._default_limit(o)) for o, x in self.ledgers.items()}
            cmds = rs.reset_commands(fresh)
            for o, x in fresh.items():
                cmds += rs.extend_commands(o, x.limit_bytes)
            self._apply(cmds)
            self.day = day
            self.ledgers = fresh
            self._save_ledgers()
            self._update_gauges()
            log.info("new day %s: %d quotas reset", day.isoformat(), len(fresh))

    def _update_gauges(self) -> None:
        """Gauges, and the spent4 set, after any change of devices or quotas."""
        self._sync_spent()
        counts = dict.fromkeys(CLASSES, 0)
        for d in self.devices.values():
            counts[d.owner.kind] += 1
        spent = dict.fromkeys(CLASSES, 0)
        for o, x in self.ledgers.items():
            spent[o.kind] += x.spent
        for c in CLASSES:
            self.metrics.devices.labels(c).set(counts[c])
            self.metrics.exhausted.labels(c).set(spent[c])

    def _sync_spent(self) -> None:
        """Devices of owners whose quota is spent under "block" go in `spent4` (their
        HTTP meets the portal's "quota reached" page); out again once extended, reset,
        at midnight, or gone. The kernel blocks at once; this follows at the next read
        of the counters (`check_spent`, every SPENT_CHECK_SECONDS)."""
        want = {
            m: d for m, d in self.devices.items()
            if (x := self.ledgers.get(d.owner)) is not None and x.spent and x.policy == "block"
        }
        remove = [d for m, d in self.spent_marked.items() if want.get(m) != d]
        add = [d for m, d in want.items() if self.spent_marked.get(m) != d]
        if not add and not remove:
            return
        try:
            self._apply(rs.spent_commands(add, remove))
        except rs.NftError as exc:
            log.error("the quota-reached redirect was not updated (%s)", type(exc).__name__)
            return
        self.spent_marked = want

    def check_spent(self) -> None:
        """Read the kernel's quotas and update the quota-reached redirect, between two
        saves of the counts (the ledgers themselves change only in persist)."""
        with self._lock:
            owners = {
                d.owner for d in self.devices.values()
                if (x := self.ledgers.get(d.owner)) is not None and x.policy == "block"
            }
            if not owners:
                return
            readings = self.nft.read_quotas()
            for owner in owners:
                self.ledgers[owner] = qm.observe(self.ledgers[owner], readings.get(owner))
            self._update_gauges()

    # --- actions --------------------------------------------------------------------

    def guest_owner(self, mac: str) -> rs.Owner:
        """A guest's quota belongs to the device: one owner id per MAC."""
        mac = rs.normalize_mac(mac)
        with db.transaction(self.conn):
            self.conn.execute(
                "INSERT OR IGNORE INTO guest_devices (mac, first_seen) VALUES (?, ?)",
                (mac, self.wall()),
            )
            row = self.conn.execute("SELECT id FROM guest_devices WHERE mac = ?", (mac,)).fetchone()
        return rs.Owner("guest", row[0])

    def authorize(self, owner: rs.Owner, mac: str, ip: str) -> rs.Device:
        """Bind MAC and IP to the owner's quota, in one transaction with any clean-up."""
        device = rs.Device.parse(mac, ip, owner)
        with self._lock:
            if owner.kind == "voucher":
                self._check_voucher(owner.id, device.mac)
            cmds: list[rs.Command] = []
            stale = [
                d
                for d in self.devices.values()
                if d.mac == device.mac or (d.ip == device.ip and d.mac != device.mac)
            ]
            if stale:
                self._read_devices()  # the replaced sessions' last bytes
            for d in stale:
                cmds += rs.remove_device_commands(d)
            new_owner = owner not in self.ledgers
            ledger = self.ledgers.get(owner) or self._new_ledger(owner)
            if new_owner:
                cmds += rs.owner_commands(ledger.quota())
            cmds += rs.device_commands(device)
            try:
                self._apply(cmds)
            except rs.NftError:
                self.metrics.authorizations.labels(owner.kind, "error").inc()
                raise
            now = self.wall()
            with db.transaction(self.conn):
                for d in stale:
                    self.devices.pop(d.mac, None)
                    self._end_session(d, now, "replaced")
                self.conn.execute(
                    "INSERT INTO wifi_sessions (owner_kind, owner_id, mac, ip, started_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (owner.kind, owner.id, device.mac, str(device.ip), now),
                )
                if owner.kind == "voucher":
                    self.conn.execute(
                        "UPDATE vouchers SET first_used_at = ? "
                        "WHERE id = ? AND first_used_at IS NULL",
                        (now, owner.id),
                    )
            self.devices[device.mac] = device
            for d in stale:
                self._unshape(d)
                self.last_seen.pop(d.mac, None)
                if d.ip != device.ip:
                    self._unpin(d)
            self._shape(device)
            self._pin(device)
            self.last_seen[device.mac] = now
            if new_owner:
                self.ledgers[owner] = ledger
                self._save_ledgers([owner])
            self.metrics.authorizations.labels(owner.kind, "ok").inc()
            self._update_gauges()
        return device

    # --- shaping: a failure leaves the device unshaped, never off the internet --------

    def _shape_args(self, device: rs.Device) -> tuple[Any, str, int | None, int | None]:
        group = qm.owner_class(device.owner)
        policy = self.policies[group]
        return device.ip, group, policy.down_kbit, policy.up_kbit

    def _shape_all(self) -> None:
        if self.shaper is None:
            return
        try:
            self.shaper.setup(self._shape_args(d) for d in self.devices.values())
        except (sh.TcError, ValueError) as exc:
            self.metrics.tc_errors.inc()
            # No address in ordinary logs; tc's message would carry the devices'.
            log.error("shaping not set up (%s): devices share the line unshaped",
                      type(exc).__name__)

    def _shape(self, device: rs.Device) -> None:
        if self.shaper is None:
            return
        try:
            self.shaper.add(*self._shape_args(device))
        except (sh.TcError, ValueError) as exc:
            self.metrics.tc_errors.inc()
            # No address in ordinary logs; tc's message would carry it too.
            log.error("a device could not be shaped (%s); it stays online unshaped",
                      type(exc).__name__)

    # --- neighbour pins: an IP stays bound to the MAC that logged in --------------------

    def _pin(self, device: rs.Device) -> None:
        self._neighbour("pin", device, "a device's neighbour entry was not pinned")

    def _unpin(self, device: rs.Device) -> None:
        self._neighbour("unpin", device, "a device's neighbour pin was not removed")

    def _neighbour(self, action: str, device: rs.Device, failure: str) -> None:
        """Pin or unpin; a failure is counted and logged (no address), never raised."""
        call = getattr(self.neighbours, action, None)  # a stand-in lookup may have none
        if call is None:
            return
        try:
            call(str(device.ip), device.mac)
        except (NeighbourError, OSError, ValueError, subprocess.SubprocessError) as exc:
            self.metrics.neigh_errors.inc()
            log.error("%s (%s)", failure, type(exc).__name__)

    def _unshape(self, device: rs.Device) -> None:
        if self.shaper is None:
            return
        try:
            self.shaper.remove(device.ip)
        except sh.TcError as exc:
            self.metrics.tc_errors.inc()
            log.error("a device's shaping classes were not removed (%s)", type(exc).__name__)

    def _check_voucher(self, voucher_id: int, mac: str) -> None:
        """A voucher serves at most `max_devices` devices, until it expires or is revoked.

        The gateway checks this itself (not only the portal) because it owns the sessions
        that count the devices, and a stale portal must not let one more through.
        """
        row = self.conn.execute(
            "SELECT max_devices, valid_until, revoked_at FROM vouchers WHERE id = ?",
            (voucher_id,),
        ).fetchone()
        if row is None or row["revoked_at"] is not None:
            raise ValueError("voucher unknown or revoked")
        if row["valid_until"] is not None and row["valid_until"] <= self.wall():
            raise ValueError("voucher expired")
        macs = {
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT mac FROM wifi_sessions WHERE owner_kind = 'voucher' "
                "AND owner_id = ?",
                (voucher_id,),
            )
        }
        if mac not in macs and len(macs) >= row["max_devices"]:
            raise ValueError("voucher already used by its maximum number of devices")

    def _end_session(self, device: rs.Device, now: float, reason: str) -> None:
        """Close the device's open row with the bytes last read from the kernel."""
        c = self.counted.pop(device.mac, rs.DeviceBytes())
        self._rate_samples.pop(device.mac, None)
        self.rates.pop(device.mac, None)
        self.conn.execute(
            "UPDATE wifi_sessions SET ended_at = ?, end_reason = ?, "
            "bytes_up = max(bytes_up, ?), bytes_down = max(bytes_down, ?) "
            "WHERE mac = ? AND ended_at IS NULL",
            (now, reason, c.up, c.down, device.mac),
        )

    def _read_last_bytes(self) -> None:
        """The sessions' last bytes, before their counters go (one listing of the table)."""
        try:
            self._read_devices()
        except rs.NftError as exc:
            log.error("a session's last bytes were not read (%s)", type(exc).__name__)

    def _end_sessions(self, ends: list[tuple[str, str, float | None]]) -> list[str]:
        """Kick several devices, (mac, reason, ended_at) each, after one read of the
        kernel's counters for all of them (a presence round, expired or revoked
        vouchers): not one `nft list` per device. The MACs whose session ended."""
        if not ends:
            return []
        with self._lock:
            self._read_last_bytes()
            return [mac for mac, reason, at in ends
                    if self.kick(mac, reason, ended_at=at, read=False)]

    def kick(self, mac: str, reason: str = "kicked", *, ended_at: float | None = None,
             read: bool = True) -> bool:
        """Take a device off the internet now; False if it was not authorized.

        `ended_at`: when the session really ended, if earlier than now (a device that
        left: the last time it answered). `read=False`: the caller has just read the
        counters (`_end_sessions`)."""
        mac = rs.normalize_mac(mac)
        with self._lock:
            device = self.devices.get(mac)
            if device is None:
                return False
            if read:
                self._read_last_bytes()
            self._apply(rs.remove_device_commands(device))
            del self.devices[mac]
            self.last_seen.pop(mac, None)
            self._unshape(device)
            self._unpin(device)
            with db.transaction(self.conn):
                self._end_session(device, self.wall() if ended_at is None else ended_at,
                                  reason)
            self._update_gauges()
        return True

    # --- the device lifecycle: gone from the LAN, voucher over ------------------------

    def check_presence(self, now: float | None = None) -> list[str]:
        """One presence round: probe the authorized devices, end the sessions of those
        silent for `absent_after_seconds` (reason "left") and of those whose IP dnsmasq
        has leased to another device. Returns the MACs whose session ended."""
        now = self.wall() if now is None else now
        self._last_probe = now
        leases = self.lease_file.current(now)
        self.metrics.leases.set(len(leases))
        if self.prober is None:
            return []
        with self._lock:
            targets = [(d.mac, d.ip) for d in self.devices.values()]
        if not targets:
            return []
        try:
            seen = self.prober.probe(targets)  # outside the lock: up to one timeout
        except OSError as exc:
            # A probe that could not run says nothing about the devices: nobody is "left".
            self.metrics.probe_errors.inc()
            log.error("presence probe failed (%s)", type(exc).__name__)
            return []
        by_ip = {lease.ip: lease.mac for lease in leases.values()}
        ends: list[tuple[str, str, float | None]] = []
        with self._lock:
            for mac in seen:
                self.last_seen[mac] = now
            limit = self.config.gateway.absent_after_seconds
            for mac, d in list(self.devices.items()):
                leased_to = by_ip.get(d.ip)
                silent = now - self.last_seen.setdefault(mac, now)
                if silent >= limit or (leased_to is not None and leased_to != mac
                                       and mac not in seen):
                    # The legal log's end: the last time the device answered, not now.
                    ends.append((mac, "left", self.last_seen[mac]))
            gone = self._end_sessions(ends)
        if gone:
            self.metrics.sessions_ended.labels("left").inc(len(gone))
            log.info("%d device(s) left the LAN: sessions ended", len(gone))
        return gone

    def expire_vouchers(self, now: float | None = None) -> list[str]:
        """Take off the devices of vouchers whose validity ended (reason "expired")."""
        now = self.wall() if now is None else now
        with self._lock:
            ids = {d.owner.id for d in self.devices.values() if d.owner.kind == "voucher"}
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            over = {
                r[0]
                for r in self.conn.execute(
                    f"SELECT id FROM vouchers WHERE id IN ({marks}) "  # noqa: S608 (only ?)
                    "AND valid_until IS NOT NULL AND valid_until <= ?",
                    (*sorted(ids), now),
                )
            }
            gone = self._end_sessions([(m, "expired", None) for m, d in self.devices.items()
                                       if d.owner.kind == "voucher" and d.owner.id in over])
        if gone:
            self.metrics.sessions_ended.labels("expired").inc(len(gone))
            log.info("%d device(s) of expired vouchers disconnected", len(gone))
        return gone

    def extend(self, owner: rs.Owner, extra_bytes: int) -> qm.Ledger:
        """Give an owner `extra_bytes` more today, exactly (see quotas.extend)."""
        with self._lock:
            ledger = self.ledgers.get(owner)
            if ledger is None:
                raise ValueError(f"no quota today for {owner.kind} #{owner.id}")
            ledger = qm.observe(ledger, self.nft.read_quotas().get(owner))
            plan = qm.extend(ledger, extra_bytes)
            cmds: list[rs.Command] = []
            if plan.reset_counter:
                cmds += rs.reset_commands([owner])
            cmds += rs.extend_commands(owner, plan.ledger.limit_bytes)
            self._apply(cmds)
            self.ledgers[owner] = plan.ledger
            self._save_ledgers([owner])
            self._update_gauges()
            return plan.ledger

    def reset(self, owner: rs.Owner) -> qm.Ledger:
        """An admin's reset: today's count back to zero, the default limit back."""
        with self._lock:
            ledger = self.ledgers.get(owner)
            if ledger is None:
                raise ValueError(f"no quota today for {owner.kind} #{owner.id}")
            fresh = qm.new_day(ledger, self.day, self._default_limit(owner))
            self._apply(rs.reset_commands([owner]) + rs.extend_commands(owner, fresh.limit_bytes))
            self.ledgers[owner] = fresh
            self._save_ledgers([owner])
            self._update_gauges()
            return fresh

    # --- commands over the UNIX socket ---------------------------------------------

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "status": self.cmd_status,
            "authorize": self.cmd_authorize,
            "kick": self.cmd_kick,
            "extend": self.cmd_extend,
            "reset": self.cmd_reset,
            "client": self.cmd_client,
            "portal_authorize": self.cmd_portal_authorize,
            "portal_logout": self.cmd_portal_logout,
            "voucher_create": self.cmd_voucher_create,
            "voucher_revoke": self.cmd_voucher_revoke,
        }

    def _owner(self, req: dict[str, Any]) -> rs.Owner:
        kind = req.get("kind")
        if kind == "guest" and "owner_id" not in req:
            return self.guest_owner(str(req.get("mac", "")))
        return rs.Owner(str(kind), req.get("owner_id"))  # type: ignore[arg-type]

    def cmd_authorize(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            owner = self._owner(req)
            device = self.authorize(owner, str(req.get("mac", "")), str(req.get("ip", "")))
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "owner": {"kind": owner.kind, "id": owner.id}, "mac": device.mac}

    def cmd_kick(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            found = self.kick(str(req.get("mac", "")))
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "kicked": found}

    def cmd_extend(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            ledger = self.extend(self._owner(req), req.get("extra_bytes"))  # type: ignore[arg-type]
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **_ledger_json(ledger)}

    def cmd_reset(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            ledger = self.reset(self._owner(req))
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **_ledger_json(ledger)}

    def cmd_status(self, _req: dict[str, Any]) -> dict[str, Any]:
        """Devices and quotas for the admin panel (a local socket, not metrics).

        Each device's bytes are its session's; its rate (bit/s) is the counters' change
        since an earlier read at least a second before (absent until there is one).
        """
        with self._lock:
            try:
                self._read_devices()
            except rs.NftError as exc:
                log.error("devices' counters not read (%s)", type(exc).__name__)
            quotas = [
                {"kind": o.kind, "id": o.id, **_ledger_json(x)}
                for o, x in sorted(self.ledgers.items())
            ]
            leases = self.lease_file.current(self.wall())
            devices = [
                {"mac": d.mac, "ip": str(d.ip), "kind": d.owner.kind, "owner_id": d.owner.id,
                 # What the device calls itself in DHCP: data for the admin, never a command.
                 "hostname": leases[d.mac].hostname if d.mac in leases else "",
                 "last_seen": self.last_seen.get(d.mac),
                 "bytes_up": self.counted.get(d.mac, rs.DeviceBytes()).up,
                 "bytes_down": self.counted.get(d.mac, rs.DeviceBytes()).down,
                 **_rate_json(self.rates.get(d.mac))}
                for d in self.devices.values()
            ]
        return {"ok": True, "day": self.day.isoformat(), "quotas": quotas, "devices": devices,
                "lan": self.lan_state}


    # --- the legal log and vouchers (this service's tables) ---------------------------

    def purge_sessions(self, now: float | None = None) -> int:
        """Delete the legal log's rows past retention (CPCE L34-1: one year, then gone)."""
        now = self.wall() if now is None else now
        self._last_purge = now
        try:
            with self._lock:
                n = wifilog.purge(self.conn, self.config.wifi_sessions_days, now=now)
        except sqlite3.Error as exc:
            log.warning("Wi-Fi session purge failed (%s); will retry", exc)
            return 0
        if n:
            log.info("%d Wi-Fi sessions older than %d days deleted", n,
                     self.config.wifi_sessions_days)
        return n

    def create_vouchers(
        self, *, count: int, quota_mb: int, max_devices: int, valid_days: int,
        batch: str, created_by: str | None,
    ) -> tuple[str, float, list[tuple[int, str]]]:
        """Store a batch of vouchers; returns (batch, valid_until, [(id, code)]).

        Here rather than in the panel because `vouchers` is this service's table (it
        checks them at every authorize and counts their devices); the codes leave this
        process once, in the reply, and are never logged or stored in clear.
        """
        checks = (
            ("count", count, 1, VOUCHER_BATCH_MAX),
            ("quota_mb", quota_mb, 1, VOUCHER_QUOTA_MB_MAX),
            ("max_devices", max_devices, 1, VOUCHER_DEVICES_MAX),
            ("valid_days", valid_days, 1, VOUCHER_DAYS_MAX),
        )
        for name, value, lo, hi in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be a whole number from {lo} to {hi}")
        now = self.wall()
        label = " ".join(str(batch or "").split())[:BATCH_LABEL_MAX]
        if not label:
            label = dt.datetime.fromtimestamp(now, self.config.tz).strftime("%Y-%m-%d %H:%M")
        valid_until = now + valid_days * 86400
        with self._lock, db.transaction(self.conn):
            made = [
                wifi_accounts.create_voucher(
                    self.conn, batch=label, quota_bytes=quota_mb * 1_000_000,
                    max_devices=max_devices, valid_until=valid_until,
                    created_by=(created_by or "")[:100] or None,
                )
                for _ in range(count)
            ]
        log.info("voucher batch of %d created", count)
        return label, valid_until, made

    def revoke_voucher(self, voucher_id: int) -> tuple[bool, int]:
        """Revoke a voucher and take its devices off now; returns (revoked, devices kicked)."""
        if isinstance(voucher_id, bool) or not isinstance(voucher_id, int):
            raise ValueError("voucher id must be a whole number")
        with self._lock:
            cur = self.conn.execute(
                "UPDATE vouchers SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (self.wall(), voucher_id),
            )
            owner = rs.Owner("voucher", voucher_id)
            kicked = len(self._end_sessions([(d.mac, "revoked", None)
                                             for d in self.devices.values() if d.owner == owner]))
        return cur.rowcount == 1, kicked

    def cmd_voucher_create(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            label, valid_until, made = self.create_vouchers(
                count=req.get("count"),  # type: ignore[arg-type]
                quota_mb=req.get("quota_mb"),  # type: ignore[arg-type]
                max_devices=req.get("max_devices"),  # type: ignore[arg-type]
                valid_days=req.get("valid_days"),  # type: ignore[arg-type]
                batch=str(req.get("batch") or ""),
                created_by=str(req.get("created_by") or "") or None,
            )
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return {
            "ok": True, "batch": label, "valid_until": valid_until,
            "vouchers": [{"id": i, "code": code} for i, code in made],
        }

    def cmd_voucher_revoke(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            revoked, kicked = self.revoke_voucher(req.get("id"))  # type: ignore[arg-type]
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "revoked": revoked, "kicked": kicked}

    # --- the portal's commands: the device is named by its IP, its MAC found here ------

    def _bound_device(self, ip: str) -> tuple[str | None, rs.Device | None]:
        """The MAC behind `ip` on the LAN, and the device authorized as that MAC *and* IP."""
        mac = self.neighbours.mac_of(ip)
        if mac is None:
            return None, None
        device = self.devices.get(mac)
        if device is None or str(device.ip) != str(rs.parse_ipv4(ip)):
            return mac, None
        return mac, device

    def client_info(self, ip: str) -> dict[str, Any]:
        """What the portal shows a device: authorized?, its owner's quota, time left.

        No MAC in the answer: the portal has no use for it.
        """
        with self._lock:
            mac, device = self._bound_device(ip)
            info: dict[str, Any] = {"ok": True, "known": mac is not None, "authorized": False}
            if device is None:
                return info
            owner = device.owner
            ledger = self.ledgers[owner]
            reading = self.nft.read_quotas().get(owner)
            ledger = qm.observe(ledger, reading)
            now = self.wall()
            seconds: float | None = None
            if owner.kind == "voucher":
                row = self.conn.execute(
                    "SELECT valid_until FROM vouchers WHERE id = ?", (owner.id,)
                ).fetchone()
                if row is not None and row["valid_until"] is not None:
                    seconds = max(0.0, row["valid_until"] - now)
            info.update(
                authorized=True,
                kind=owner.kind,
                owner_id=owner.id,
                seconds_remaining=None if seconds is None else int(seconds),
                reset_in_seconds=int(qm.next_midnight(now, self.config.tz) - now),
                **_ledger_json(ledger),
            )
            return info

    def cmd_client(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.client_info(str(req.get("ip", "")))
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}

    def cmd_portal_authorize(self, req: dict[str, Any]) -> dict[str, Any]:
        """Authorize the device behind `ip` (its MAC from the neighbour table, never given)."""
        kind = str(req.get("kind", ""))
        try:
            ip = str(req.get("ip", ""))
            mac = self.neighbours.mac_of(ip)
            if mac is None:
                return {"ok": False, "error": "device not found on the LAN", "reason": "unknown"}
            if kind == "guest":
                owner = self.guest_owner(mac)
            elif kind in ("member", "voucher"):
                owner = rs.Owner(kind, req.get("owner_id"))  # type: ignore[arg-type]
            else:
                raise ValueError(f"unknown kind {kind!r}")
            self.authorize(owner, mac, ip)
            return self.client_info(ip)
        except ValueError as exc:
            return {"ok": False, "error": str(exc), "reason": "refused"}

    def cmd_portal_logout(self, req: dict[str, Any]) -> dict[str, Any]:
        """Log out the device behind `ip`, only if it is bound with that very IP."""
        try:
            with self._lock:
                _mac, device = self._bound_device(str(req.get("ip", "")))
                if device is None:
                    return {"ok": True, "logged_out": False}
                return {"ok": True, "logged_out": self.kick(device.mac, "logout")}
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}


def _rate_json(rate: tuple[int, int] | None) -> dict[str, int]:
    return {} if rate is None else {"rate_down_bps": rate[0], "rate_up_bps": rate[1]}


def _ledger_json(x: qm.Ledger) -> dict[str, Any]:
    return {
        "used_bytes": x.total_used,
        "limit_bytes": x.total_limit,
        "remaining_bytes": x.remaining,
        "spent": x.spent,
        "policy": x.policy,
    }
