"""The badge reader at the door: an MFRC522 on SPI, spoken to in ISO/IEC 14443A.

Register access goes through the ``mfrc522`` package (see
:mod:`appliance.hardware.mfrc522_compat`); everything above it is ours, because the
package's own card layer busy-waits 2,000 SPI reads per empty poll, stops at cascade
level 1 (7-byte UIDs come back truncated, so distinct badges can collide) and resets
every GPIO pin when closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.hardware.mfrc522_compat import new_driver
from appliance.hardware.mfrc522_emulator import crc_a

__all__ = ["BadgeReader", "CardRead", "open_spi"]

log = logging.getLogger(__name__)

# Registers and bits (MFRC522 datasheet); names as in the mfrc522 package where it has one.
_COMMAND = 0x01
_COM_IEN = 0x02
_DIV_IEN = 0x03
_COM_IRQ = 0x04
_ERROR = 0x06
_STATUS2 = 0x08
_FIFO_DATA = 0x09
_FIFO_LEVEL = 0x0A
_CONTROL = 0x0C
_BIT_FRAMING = 0x0D
_COLL = 0x0E
_MODE = 0x11
_TX_ASK = 0x15
_T_MODE = 0x2A
_T_PRESCALER = 0x2B
_T_RELOAD_H = 0x2C
_T_RELOAD_L = 0x2D
_VERSION = 0x37

_IDLE = 0x00
_TRANSCEIVE = 0x0C
_MF_AUTHENT = 0x0E
_SOFT_RESET = 0x0F

_RX_IRQ = 0x20
_IDLE_IRQ = 0x10
_ERR_IRQ = 0x02
_TIMER_IRQ = 0x01
_COLL_ERR = 0x08
_CRYPTO1_ON = 0x08

_REQA = 0x26
_WUPA = 0x52
_SEL = (0x93, 0x95, 0x97)
_CASCADE_TAG = 0x88
_ACK = 0x0A

# The timer ticks at 13.56 MHz / (2 * 0xA9 + 1) = 40 kHz, i.e. every 25 us.
_PRESCALER = 0xA9
_TICK = 25e-6
# ISO 14443-3 frames are answered within ~0.1 ms; 1.5 ms ends an empty poll fast.
_SHORT_TICKS = 60
# MIFARE authentication, READ and WRITE (up to ~10 ms of EEPROM programming).
_LONG_TICKS = 1000

KNOWN_VERSIONS = {0x91: "MFRC522 v1.0", 0x92: "MFRC522 v2.0", 0x88: "FM17522", 0x12: "clone"}
_NOT_ANSWERING = (0x00, 0xFF)


@dataclass(frozen=True)
class CardRead:
    """One card seen by the reader: complete UID (4, 7 or 10 bytes), SAK and ATQA."""

    uid: bytes
    sak: int
    atqa: int


@dataclass(frozen=True)
class _Frame:
    """A card's answer as the chip received it."""

    data: bytes
    bits: int
    coll_pos: int | None  # 1-based bit position in the FIFO of the first collision


@dataclass(frozen=True)
class _Status:
    """The registers read after a command, in one SPI transfer."""

    irq: int
    error: int
    fifo_level: int
    control: int
    coll: int
    status2: int


class _ChipFault(Exception):
    """The chip did not behave like a chip: no interrupt at all, or nonsense status."""


class _CardError(Exception):
    """A card answered but the answer is unusable (garbled, bad CRC, bad BCC)."""


def open_spi(bus: int = 0, device: int = 0, max_speed_hz: int = 1_000_000) -> Any:
    """Open ``/dev/spidev<bus>.<device>`` for the MFRC522 (SPI mode 0, MSB first)."""
    import spidev  # only on the Pi (the "pi" extra)

    spi = spidev.SpiDev()
    spi.open(bus, device)
    spi.max_speed_hz = max_speed_hz
    spi.mode = 0
    return spi


class BadgeReader:
    """An MFRC522 badge reader: polls for ISO 14443A cards and reads MIFARE Classic.

    ``spi`` is an opened ``spidev.SpiDev`` (:func:`open_spi`) or an
    :class:`~appliance.hardware.mfrc522_emulator.EmulatedSpiDev`. ``reset`` is the
    chip's NRSTPD pin as a gpiozero ``DigitalOutputDevice`` (high = running); with it,
    :meth:`open` can bring back a chip that hung, which a soft reset cannot. ``irq`` is
    the chip's IRQ pin as a gpiozero ``DigitalInputDevice(pin, pull_up=True)``: the
    chip is set up with an active-low, open-drain IRQ, so the device is active when an
    interrupt is pending; with it, waits cost no SPI reads at all. ``clock`` and
    ``sleep`` are injected so tests can run the health check and back-off on a fake
    clock.

    Behaviour, and why:

    * :meth:`poll` is cheap when nobody is there: one REQA, at most 10 SPI transfers
      (the mfrc522 package spends ~2,000), so the door service can poll ten times a
      second on a Pi without eating a core.
    * UIDs are complete: the full anticollision cascade runs (levels 1 to 3, BCC
      checked, collisions resolved bit by bit), so two 7-byte badges sharing their first
      three bytes are different badges.
    * A UID is only returned after the card itself confirmed it by answering SELECT
      with a correct CRC; a garbled transfer or a CRC error gives ``None`` and counts in
      :attr:`errors`, never a wrong UID.
    * A badge held on the reader counts once: it is halted after use, and while it is
      known each poll wakes it (WUPA) and re-selects it by UID to see whether it is
      still there. It is reported again only after a poll found it gone.
    * Health: every ``health_interval`` seconds, and after a fault, ``VersionReg`` is
      read. A chip that stops answering (MISO all 0x00 or 0xFF, as MFRC522 modules do
      after days on a long cable) marks :attr:`reader_up` False and is re-initialised
      with exponential back-off (1 s doubling to 60 s); polls in between return at once.
    * :meth:`close` halts the card and switches the antenna off but never calls
      ``GPIO.cleanup()``, which would also reset the lock relay's pin.
    """

    BACKOFF_FIRST = 1.0
    BACKOFF_MAX = 60.0
    FAULTS_BEFORE_REINIT = 3

    def __init__(
        self,
        spi: Any,
        *,
        reset: Any | None = None,
        irq: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        health_interval: float = 5.0,
    ) -> None:
        self._spi = spi
        self._driver = new_driver(spi, logger=log)
        self._reset = reset
        self._irq = irq
        self._clock = clock
        self._sleep = sleep
        self._health_interval = health_interval
        self._up: bool | None = None  # None until the first open()
        self._version: int | None = None
        self._errors = 0
        self._faults = 0
        self._backoff: float | None = None
        self._retry_at = 0.0
        self._next_health = 0.0
        self._timer_ticks: int | None = None
        self._known: set[bytes] = set()
        self._current: CardRead | None = None
        self._crypto = False
        self._needs_wake = False
        self._stray_ready = False

    # -- state ---------------------------------------------------------------------------

    @property
    def reader_up(self) -> bool:
        """True while the chip answers and is initialised."""
        return bool(self._up)

    @property
    def errors(self) -> int:
        """Cumulative count of reader errors (garbled or CRC-failed frames, faults, outages)."""
        return self._errors

    @property
    def version(self) -> int | None:
        """``VersionReg`` read at the last successful :meth:`open` (0x92 = MFRC522 v2)."""
        return self._version

    @property
    def current(self) -> CardRead | None:
        """The card returned by the last :meth:`poll`, until :meth:`release`."""
        return self._current

    # -- life cycle ----------------------------------------------------------------------

    def open(self) -> bool:
        """Reset and configure the chip, switch the antenna on; True if the chip answers.

        A chip that does not answer is not an exception: the door must keep working
        (exit button, contact) and :meth:`poll` retries with back-off.
        """
        version = None
        try:
            version = self._init_chip()
        except OSError:
            log.exception("SPI error while initialising the badge reader")
        now = self._clock()
        self._current = None
        self._crypto = False
        if version is None:
            self._set_down(now)
            return False
        if version not in KNOWN_VERSIONS:
            log.warning("badge reader VersionReg 0x%02x is not a known MFRC522", version)
        if self._up is not True:
            log.info("badge reader up: %s", KNOWN_VERSIONS.get(version, hex(version)))
        self._version = version
        self._up = True
        self._backoff = None
        self._faults = 0
        self._next_health = now + self._health_interval
        return True

    def _init_chip(self) -> int | None:
        """Hard reset (if wired), soft reset, timer and modulation set-up, antenna on."""
        d = self._driver
        if self._reset is not None:
            self._reset.off()
            self._sleep(0.001)
            self._reset.on()
        d.Write_MFRC522(_COMMAND, _SOFT_RESET)
        self._sleep(0.05)  # oscillator start-up after reset
        version = d.Read_MFRC522(_VERSION)
        if version in _NOT_ANSWERING:
            log.warning("badge reader not answering (VersionReg 0x%02x)", version)
            return None
        # TAuto: the timer starts when a frame has been sent and stops when an answer
        # begins, so "nobody answered" is an interrupt instead of a busy-wait.
        d.Write_MFRC522(_T_MODE, 0x80 | (_PRESCALER >> 8))
        d.Write_MFRC522(_T_PRESCALER, _PRESCALER & 0xFF)
        self._timer_ticks = None
        self._set_timer(_SHORT_TICKS)
        d.Write_MFRC522(_TX_ASK, 0x40)  # 100 % ASK, as ISO 14443A requires
        d.Write_MFRC522(_MODE, 0x3D)  # CRC preset 0x6363 (CRC_A)
        d.Write_MFRC522(_COLL, 0x00)  # clear bits received after a collision
        # IRQ pin: active low (IRqInv) on RxIRq, IdleIRq, ErrIRq, TimerIRq; open drain.
        d.Write_MFRC522(_COM_IEN, 0x80 | _RX_IRQ | _IDLE_IRQ | _ERR_IRQ | _TIMER_IRQ)
        d.Write_MFRC522(_DIV_IEN, 0x00)
        d.AntennaOn()
        return version

    def close(self) -> None:
        """Halt the card, switch the antenna off, close the SPI device.

        GPIO is left alone: the reset and IRQ devices belong to the caller, and
        ``GPIO.cleanup()`` would reset every pin, the lock relay's included.
        """
        if self._up:
            try:
                self.release()
                self._driver.AntennaOff()
            except OSError:
                log.warning("badge reader: SPI error while closing", exc_info=True)
        self._up = False
        self._known.clear()
        self._spi.close()

    # -- polling -------------------------------------------------------------------------

    def poll(self) -> CardRead | None:
        """Look for a new card once; return it, or None (nobody, held card, error, down).

        The returned card stays selected (see :meth:`authenticate`) until
        :meth:`release` or the next poll.
        """
        now = self._clock()
        if not self._up:
            if now < self._retry_at or not self.open():
                return None
        elif now >= self._next_health and not self._health_check(now):
            return None
        try:
            if self._current is not None:
                self.release()
            if self._known:
                self._refresh_known()
            card = self._find_new()
            self._faults = 0
            return card
        except _ChipFault:
            self._on_fault()
        except _CardError as exc:
            self._errors += 1
            self._stray_ready = True
            log.debug("badge read failed: %s", exc)
        except OSError:
            log.warning("badge reader: SPI error", exc_info=True)
            self._on_fault()
        return None

    def _find_new(self) -> CardRead | None:
        """REQA (only cards not yet seen answer), then select one of them."""
        retries = 1 if self._stray_ready else 0
        self._stray_ready = False
        for _ in range(4):
            answer = self._request(_REQA)
            if answer is None:
                if retries:
                    # A card left READY/ACTIVE by an error ignores the first REQA (it drops
                    # back to IDLE); the second one finds it.
                    retries -= 1
                    continue
                return None
            found = self._select_cascade()
            if found is None:
                return None
            uid, sak = found
            if uid in self._known:
                # Still held, but the field was reset (re-initialisation): not a new tap.
                self._halt()
                continue
            atqa, collided = answer
            # With several cards the ATQA is their superposition; alone, it must agree.
            if not collided and (atqa >> 6) & 0x03 != (len(uid) // 3) - 1:
                raise _CardError("ATQA UID size does not match the UID")
            card = CardRead(uid=uid, sak=sak, atqa=atqa)
            self._known.add(uid)
            self._current = card
            self._needs_wake = False
            return card
        return None

    def _refresh_known(self) -> None:
        """WUPA and re-select each known card: halt it again, or forget it if gone."""
        still: set[bytes] = set()
        for uid in sorted(self._known):
            present = self._wake_select(uid)
            if present is None:
                self._known.clear()  # nobody answered WUPA: the field is empty
                return
            if present:
                self._halt()
                still.add(uid)
            else:
                self._stray_ready = True  # someone else answered WUPA: a new card
        self._known = still

    def _health_check(self, now: float) -> bool:
        """Read VersionReg; a chip answering 0x00/0xFF is down."""
        self._next_health = now + self._health_interval
        try:
            version = self._driver.Read_MFRC522(_VERSION)
        except OSError:
            version = 0x00
        if version in _NOT_ANSWERING:
            log.warning("badge reader stopped answering (VersionReg 0x%02x)", version)
            self._set_down(now)
            return False
        return True

    def _on_fault(self) -> None:
        """A command never completed: check the chip; re-initialise after repeated faults."""
        self._errors += 1
        self._faults += 1
        now = self._clock()
        if not self._health_check(now):
            return
        if self._faults >= self.FAULTS_BEFORE_REINIT:
            # The chip answers but its commands never complete (e.g. a brown-out reset
            # its timer set-up): configure it again.
            log.warning("badge reader: %d faults in a row, re-initialising", self._faults)
            self.open()

    def _set_down(self, now: float) -> None:
        """Mark the reader down and schedule the next open() with exponential back-off."""
        if self._up is not False:
            self._errors += 1
        self._up = False
        self._current = None
        self._crypto = False
        if self._backoff is None:
            self._backoff = self.BACKOFF_FIRST
        else:
            self._backoff = min(self._backoff * 2, self.BACKOFF_MAX)
        self._retry_at = now + self._backoff

    # -- the selected card -----------------------------------------------------------------

    def _require_card(self) -> CardRead:
        """The current card, or an error for a caller that did not poll first."""
        if self._current is None:
            raise RuntimeError("no card selected: use a CardRead returned by poll()")
        return self._current

    def authenticate(self, block: int, key: bytes, key_type: str = "A") -> bool:
        """MIFARE Classic authentication of ``block``'s sector with a 6-byte key A or B.

        On failure the card drops to IDLE (its protocol says so); it is woken and
        selected again, so the caller may try another key.
        """
        card = self._require_card()
        if len(key) != 6 or key_type not in ("A", "B") or not 0 <= block < 256:
            raise ValueError("key must be 6 bytes, key_type 'A' or 'B', block 0-255")
        try:
            if self._needs_wake and not self._rewake(card):
                return False
            # The chip wants 4 UID bytes: the UID itself, or its last 4 for 7-byte UIDs.
            data = bytes((0x60 if key_type == "A" else 0x61, block)) + key + card.uid[-4:]
            status = self._command(_MF_AUTHENT, data, ticks=_LONG_TICKS)
            if status.irq & _IDLE_IRQ and status.status2 & _CRYPTO1_ON and not status.error:
                self._crypto = True
                return True
            if not status.irq & (_TIMER_IRQ | _ERR_IRQ | _IDLE_IRQ):
                raise _ChipFault("MFAuthent never completed")
            self._stop_crypto()
            self._rewake(card)
            return False
        except _ChipFault:
            self._on_fault()
        except _CardError:
            self._errors += 1
            self._needs_wake = True
        return False

    def read_block(self, block: int) -> bytes | None:
        """READ one 16-byte block of the authenticated sector; None on any failure."""
        self._require_card()
        try:
            frame = self._transceive(self._with_crc((0x30, block)), ticks=_LONG_TICKS)
            if frame is None or frame.bits == 4:
                self._needs_wake = True  # no answer or NAK: the card is IDLE now
                return None
            if frame.bits != 18 * 8 or crc_a(frame.data[:16]) != frame.data[16:18]:
                raise _CardError("READ answer garbled or CRC error")
            return frame.data[:16]
        except _ChipFault:
            self._on_fault()
        except _CardError:
            self._errors += 1
            self._needs_wake = True
        return None

    def write_block(self, block: int, data: bytes) -> bool:
        """WRITE 16 bytes to a block of the authenticated sector; True once acknowledged."""
        self._require_card()
        if len(data) != 16:
            raise ValueError("a MIFARE Classic block is 16 bytes")
        try:
            for frame_out in (self._with_crc((0xA0, block)), self._with_crc(data)):
                frame = self._transceive(frame_out, ticks=_LONG_TICKS)
                if frame is None or frame.bits != 4 or frame.data[0] & 0x0F != _ACK:
                    self._needs_wake = True
                    return False
            return True
        except _ChipFault:
            self._on_fault()
        except _CardError:
            self._errors += 1
            self._needs_wake = True
        return False

    def release(self) -> None:
        """Done with the current card: halt it (so it stays quiet) and stop Crypto1."""
        if self._current is None:
            return
        self._current = None
        self._needs_wake = False
        try:
            self._halt()
        except (_ChipFault, _CardError):
            self._errors += 1  # the next poll's WUPA check halts the card again
        finally:
            self._stop_crypto()

    def _rewake(self, card: CardRead) -> bool:
        """Bring the current card back to ACTIVE after a failed operation."""
        self._stop_crypto()
        present = self._wake_select(card.uid)
        if present is None:
            # A card still ACTIVE (say the error was RF noise) takes the first WUPA as a
            # protocol error and drops to IDLE; the second one wakes it.
            present = self._wake_select(card.uid)
        present = bool(present)
        self._needs_wake = not present
        return present

    def _stop_crypto(self) -> None:
        """Clear MFCrypto1On, so the next frames go out in clear."""
        if self._crypto:
            self._crypto = False
            self._driver.ClearBitMask(_STATUS2, _CRYPTO1_ON)

    # -- ISO 14443-3 -----------------------------------------------------------------------

    def _request(self, command: int) -> tuple[int, bool] | None:
        """REQA or WUPA (7-bit frame): (ATQA, several cards collided), or None if nobody."""
        frame = self._transceive(bytes((command,)), tx_bits=7, collisions=True)
        if frame is None:
            return None
        if frame.bits != 16:
            raise _CardError("ATQA is not 16 bits")
        atqa = frame.data[0] | (frame.data[1] << 8)
        collided = frame.coll_pos is not None
        if not collided and bin(atqa & 0x1F).count("1") != 1:
            raise _CardError("ATQA without exactly one anticollision bit")
        return atqa, collided

    def _select_cascade(self) -> tuple[bytes, int] | None:
        """Anticollision and SELECT on each cascade level; the whole UID and final SAK."""
        uid = b""
        for level, sel in enumerate(_SEL, start=1):
            found = self._anticollide(sel)
            if found is None:
                return None
            cln, sak = found
            if sak & 0x04:
                if cln[0] != _CASCADE_TAG:
                    raise _CardError("cascade bit set without the cascade tag")
                uid += cln[1:]
                continue
            if level == 1 and cln[0] == _CASCADE_TAG:
                raise _CardError("cascade tag in a complete single-size UID")
            return uid + cln, sak
        raise _CardError("more than three cascade levels")

    def _anticollide(self, sel: int) -> tuple[bytes, int] | None:
        """Bit-oriented anticollision on one level, then SELECT; (4 UID bytes, SAK)."""
        uid5 = bytearray(5)
        known = 0
        while known < 32:
            full, rem = divmod(known, 8)
            sent = bytearray(uid5[: full + (1 if rem else 0)])
            if rem:
                sent[-1] &= (1 << rem) - 1
            frame_out = bytes((sel, ((2 + full) << 4) | rem)) + bytes(sent)
            frame = self._transceive(frame_out, tx_bits=rem, rx_align=rem, collisions=True)
            if frame is None:
                return None
            if frame.bits != rem + 40 - known:
                raise _CardError("anticollision answer of the wrong length")
            for i, byte in enumerate(frame.data[: 5 - full]):
                if i == 0 and rem:
                    low = (1 << rem) - 1
                    byte = (uid5[full] & low) | (byte & ~low & 0xFF)
                uid5[full + i] = byte
            if frame.coll_pos is None:
                if uid5[4] != uid5[0] ^ uid5[1] ^ uid5[2] ^ uid5[3]:
                    raise _CardError("BCC mismatch")
                break
            bit = full * 8 + frame.coll_pos - 1
            if not known <= bit < 32:
                raise _CardError("collision outside the UID")
            # Follow the cards that sent a 1 at the collision; the others wait.
            uid5[bit // 8] |= 1 << (bit % 8)
            known = bit + 1
        else:
            uid5[4] = uid5[0] ^ uid5[1] ^ uid5[2] ^ uid5[3]
        sak = self._select(sel, bytes(uid5))
        return None if sak is None else (bytes(uid5[:4]), sak)

    def _select(self, sel: int, cln_bcc: bytes) -> int | None:
        """SELECT with 4 UID bytes + BCC; the SAK, or None when no card has that UID."""
        frame = self._transceive(self._with_crc(bytes((sel, 0x70)) + cln_bcc))
        if frame is None:
            return None
        if frame.bits != 24 or crc_a(frame.data[:1]) != frame.data[1:3]:
            raise _CardError("SAK garbled or CRC error")
        return frame.data[0]

    def _wake_select(self, uid: bytes) -> bool | None:
        """WUPA, then SELECT ``uid`` directly. None: nobody answered WUPA; else present?"""
        if self._request(_WUPA) is None:
            return None
        if len(uid) == 4:
            levels = [uid]
        else:
            levels = [bytes((_CASCADE_TAG,)) + uid[i : i + 3] for i in range(0, len(uid) - 4, 3)]
            levels.append(uid[-4:])
        for sel, cln in zip(_SEL, levels, strict=False):
            if self._select(sel, cln + bytes((cln[0] ^ cln[1] ^ cln[2] ^ cln[3],))) is None:
                return False
        return True

    def _halt(self) -> None:
        """HLTA: the card goes quiet until it leaves the field or hears WUPA."""
        self._transceive(self._with_crc((0x50, 0x00)))

    @staticmethod
    def _with_crc(data: Any) -> bytes:
        """``data`` followed by its CRC_A (computed here: saves the chip's 5+ transfers)."""
        data = bytes(data)
        return data + crc_a(data)

    # -- chip commands -------------------------------------------------------------------

    def _transceive(
        self,
        data: bytes,
        *,
        tx_bits: int = 0,
        rx_align: int = 0,
        collisions: bool = False,
        ticks: int = _SHORT_TICKS,
    ) -> _Frame | None:
        """Send a frame, receive the answer; None when the timer says nobody answered."""
        status = self._command(_TRANSCEIVE, data, framing=(rx_align << 4) | tx_bits, ticks=ticks)
        if status.irq & _RX_IRQ:
            errors = status.error & ~(_COLL_ERR if collisions else 0)
            if errors:
                raise _CardError(f"ErrorReg 0x{status.error:02x}")
            level = status.fifo_level & 0x7F
            if not 0 < level <= 64:
                raise _CardError("answer with an impossible FIFO level")
            data_in = bytes(self._read_fifo(level))
            last = status.control & 0x07
            bits = (level - 1) * 8 + last if last else level * 8
            coll_pos = None
            if status.error & _COLL_ERR:
                if status.coll & 0x20:
                    raise _CardError("collision position not valid")
                coll_pos = status.coll & 0x1F or 32
            return _Frame(data_in, bits, coll_pos)
        if status.irq & _TIMER_IRQ:
            return None
        if status.irq & _ERR_IRQ:
            raise _CardError(f"ErrorReg 0x{status.error:02x} without an answer")
        raise _ChipFault("Transceive never completed")

    def _command(self, command: int, data: bytes, *, framing: int = 0, ticks: int) -> _Status:
        """Run a chip command on ``data`` and wait for it: 7 writes and 1+ status read."""
        d = self._driver
        self._set_timer(ticks)
        d.Write_MFRC522(_COMMAND, _IDLE)  # stop a Transceive still waiting from last time
        d.Write_MFRC522(_COM_IRQ, 0x7F)  # clear every interrupt request
        d.Write_MFRC522(_FIFO_LEVEL, 0x80)  # flush the FIFO
        self._spi.xfer2([(_FIFO_DATA << 1) & 0x7E, *data])  # the whole frame, one burst
        # StartSend must be 0 when the command starts, or the chip sends at once.
        d.Write_MFRC522(_BIT_FRAMING, framing)
        d.Write_MFRC522(_COMMAND, command)
        if command == _TRANSCEIVE:
            d.Write_MFRC522(_BIT_FRAMING, 0x80 | framing)  # StartSend
        return self._wait(ticks)

    def _wait(self, ticks: int) -> _Status:
        """Wait for the command's interrupt: on the IRQ pin, or a few status reads.

        Never a busy loop: the chip's own timer guarantees an interrupt, so a bounded
        number of reads, spaced by the timeout, is enough.
        """
        done = _RX_IRQ | _IDLE_IRQ | _ERR_IRQ | _TIMER_IRQ
        timeout = ticks * _TICK
        if self._irq is not None:
            self._irq.wait_for_active(timeout=timeout + 0.01)
            return self._read_status()
        if ticks <= _SHORT_TICKS:
            # Sleep past the timeout: an empty poll then needs a single status read.
            first, step, reads = timeout + 0.0005, 0.001, 3
        else:
            # Long commands usually end within a few ms: look early, then every 2 ms.
            first, step = 0.002, 0.002
            reads = int(timeout / step) + 3
        self._sleep(first)
        for attempt in range(reads):
            status = self._read_status()
            if status.irq & done:
                return status
            if attempt + 1 < reads:
                self._sleep(step)
        return status

    def _read_status(self) -> _Status:
        """ComIrqReg, ErrorReg, FIFOLevelReg, ControlReg, CollReg, Status2Reg: 1 transfer."""
        return _Status(*self._read_registers(
            (_COM_IRQ, _ERROR, _FIFO_LEVEL, _CONTROL, _COLL, _STATUS2)
        ))

    def _read_fifo(self, count: int) -> list[int]:
        """Read ``count`` FIFO bytes in one transfer."""
        return self._read_registers((_FIFO_DATA,) * count)

    def _read_registers(self, addresses: tuple[int, ...]) -> list[int]:
        """Several register reads in one SPI transfer (datasheet 8.1.2.1)."""
        mosi = [((a << 1) & 0x7E) | 0x80 for a in addresses] + [0]
        return list(self._spi.xfer2(mosi)[1:])

    def _set_timer(self, ticks: int) -> None:
        """Load the timer reload value, only when it changes (2 transfers)."""
        if self._timer_ticks == ticks:
            return
        self._driver.Write_MFRC522(_T_RELOAD_H, ticks >> 8)
        self._driver.Write_MFRC522(_T_RELOAD_L, ticks & 0xFF)
        self._timer_ticks = ticks
