"""An emulated MFRC522 reader chip and MIFARE Classic 1K cards, behind a spidev-like object.

The emulation is at the level of the chip's SPI registers, so the very code that talks to
a real reader (the ``mfrc522`` package's register access and our
:class:`appliance.door.reader.BadgeReader`) runs unchanged in tests and in
``telecentre demo``::

    chip = EmulatedMFRC522()
    spi = EmulatedSpiDev(chip)
    chip.present(MifareClassic1K(bytes.fromhex("04a1b2c3d4e5f6")))

What is emulated (MFRC522 datasheet rev. 3.9, ISO/IEC 14443-3, NXP MF1S50 datasheet):

* SPI framing: ``(addr << 1) & 0x7E`` to write (every further byte goes to the same
  address), ``| 0x80`` to read (several addresses may be read in one transfer).
* Registers with their reset values; the 64-byte FIFO and ``FIFOLevelReg`` (flush bit);
  ``ComIrqReg``/``DivIrqReg`` with the Set1/Set2 write semantic; ``ErrorReg``;
  ``ControlReg`` RxLastBits; ``CollReg``; ``ComIEnReg``/``DivIEnReg`` and the IRQ pin.
* Commands Idle, Transceive (started by ``BitFramingReg`` StartSend, honouring TxLastBits
  and RxAlign), CalcCRC, MFAuthent, SoftReset; Transmit/Receive/Mem/GenerateRandomID are
  accepted and harmless. As on the real chip, Transceive never ends by itself: when no
  card answers, TimerIRq is set (with ``TModeReg`` TAuto) and the command stays
  Transceive until the host writes another command.
* The antenna (``TxControlReg`` bits 0-1): with it off no card is powered; switching it
  off resets every card in the field to IDLE.
* Cards: ISO 14443A states IDLE/READY/ACTIVE/HALT (+ AUTHENTICATED), REQA/WUPA,
  bit-oriented anticollision on cascade levels 1 and 2, SELECT, HLTA, MIFARE Classic
  authentication (the key is checked, Crypto1 itself is not emulated), READ, WRITE.
  Several cards may be in the field: their answers are superposed bit by bit, and
  differing bits are reported as a collision (``CollErr``, ``CollReg`` CollPos).

Not emulated: LoAlert/HiAlert FIFO interrupts, parity, timing (the chip answers
instantly, so the timer "expires" at once when nobody answers), the Crypto1 cipher.

Faults, for tests and the demo: :meth:`EmulatedMFRC522.go_silent`,
:meth:`~EmulatedMFRC522.garble`, :meth:`~EmulatedMFRC522.corrupt_crc`,
:meth:`~EmulatedMFRC522.remove_after`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EmulatedMFRC522",
    "EmulatedSpiDev",
    "MifareClassic1K",
    "crc_a",
]

# Registers (MFRC522 datasheet, table 20).
COMMAND = 0x01
COM_IEN = 0x02
DIV_IEN = 0x03
COM_IRQ = 0x04
DIV_IRQ = 0x05
ERROR = 0x06
STATUS1 = 0x07
STATUS2 = 0x08
FIFO_DATA = 0x09
FIFO_LEVEL = 0x0A
WATER_LEVEL = 0x0B
CONTROL = 0x0C
BIT_FRAMING = 0x0D
COLL = 0x0E
MODE = 0x11
TX_CONTROL = 0x14
CRC_RESULT_M = 0x21
CRC_RESULT_L = 0x22
T_MODE = 0x2A
VERSION = 0x37

# Commands.
CMD_IDLE = 0x00
CMD_MEM = 0x01
CMD_RANDOM_ID = 0x02
CMD_CALC_CRC = 0x03
CMD_TRANSMIT = 0x04
CMD_NO_CHANGE = 0x07
CMD_RECEIVE = 0x08
CMD_TRANSCEIVE = 0x0C
CMD_MF_AUTHENT = 0x0E
CMD_SOFT_RESET = 0x0F

# ComIrqReg bits.
TX_IRQ = 0x40
RX_IRQ = 0x20
IDLE_IRQ = 0x10
ERR_IRQ = 0x02
TIMER_IRQ = 0x01
# DivIrqReg bits.
CRC_IRQ = 0x04
# ErrorReg bits.
PROTOCOL_ERR = 0x01
CRC_ERR = 0x04
COLL_ERR = 0x08
BUFFER_OVFL = 0x10
# Status2Reg.
MF_CRYPTO1_ON = 0x08

_RESET_VALUES = {
    0x01: 0x20, 0x02: 0x80, 0x04: 0x14, 0x07: 0x21, 0x0B: 0x08, 0x0C: 0x10, 0x0E: 0x80,
    0x11: 0x3F, 0x14: 0x80, 0x16: 0x10, 0x17: 0x84, 0x18: 0x84, 0x19: 0x4D, 0x1C: 0x62,
    0x1F: 0xEB, 0x21: 0xFF, 0x22: 0xFF, 0x24: 0x26, 0x26: 0x48, 0x27: 0x88, 0x28: 0x20,
    0x29: 0x20, 0x33: 0x80, 0x36: 0x40,
}
_CRC_PRESETS = (0x0000, 0x6363, 0xA671, 0xFFFF)
_FIFO_SIZE = 64
ACK = 0x0A
NAK_NOT_ALLOWED = 0x04
NAK_TRANSMISSION = 0x05
CASCADE_TAG = 0x88
TRANSPORT_ACCESS_BITS = bytes.fromhex("ff078069")


def crc_a(data: Iterable[int], preset: int = 0x6363) -> bytes:
    """ISO/IEC 14443-3 CRC_A of ``data``, as the two bytes sent on air (LSB first)."""
    crc = preset
    for byte in data:
        byte ^= crc & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = (crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)
    return bytes((crc & 0xFF, crc >> 8))


def _to_bits(data: bytes, nbits: int | None = None) -> list[int]:
    """Bits of ``data`` in air order (LSB of each byte first), cut to ``nbits``."""
    bits = [(byte >> i) & 1 for byte in data for i in range(8)]
    return bits if nbits is None else bits[:nbits]


def _bcc(data: bytes) -> int:
    """Block check character: XOR of the UID bytes of one cascade level."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def _access_bits_valid(access: bytes) -> bool:
    """True when the three access-bit nibble groups are stored with their complements."""
    b6, b7, b8 = access[0], access[1], access[2]
    return (
        (b6 & 0x0F) == (~b7 >> 4) & 0x0F
        and (b6 >> 4) == (~b8) & 0x0F
        and (b7 & 0x0F) == (~b8 >> 4) & 0x0F
    )


@dataclass
class _Reply:
    """A card's answer: bits in air order; ``has_crc`` when it ends with a CRC_A."""

    bits: list[int]
    has_crc: bool = False


class MifareClassic1K:
    """An emulated MIFARE Classic 1K card (ISO 14443A, 16 sectors x 4 blocks of 16 bytes).

    ``uid`` is 4 bytes (single size, ATQA 0x0004) or 7 bytes (double size, ATQA 0x0044,
    cascade level 1 carries the cascade tag 0x88). Sector trailers start as shipped:
    key A and key B ``FF``x6, access bits ``FF 07 80 69``. Block 0 holds the
    manufacturer data and cannot be written (like a genuine card).
    """

    BLOCKS = 64

    def __init__(self, uid: bytes, *, blocks: Sequence[bytes] | None = None) -> None:
        uid = bytes(uid)
        if len(uid) not in (4, 7):
            raise ValueError("a MIFARE Classic UID is 4 or 7 bytes")
        if uid[0] == CASCADE_TAG:
            raise ValueError("0x88 (cascade tag) cannot be the first UID byte")
        self.uid = uid
        self.atqa = 0x0004 if len(uid) == 4 else 0x0044
        if blocks is not None:
            if len(blocks) != self.BLOCKS or any(len(b) != 16 for b in blocks):
                raise ValueError("blocks must be 64 blocks of 16 bytes")
            self.blocks = [bytearray(b) for b in blocks]
        else:
            self.blocks = [bytearray(16) for _ in range(self.BLOCKS)]
            if len(uid) == 4:
                head = uid + bytes((_bcc(uid), 0x08, 0x04, 0x00))
            else:
                head = uid + bytes((0x08, 0x44, 0x00))
            self.blocks[0][: len(head)] = head
            self.blocks[0][len(head):] = b"\x62\x63\x64\x65\x66\x67\x68\x69\x90"[
                : 16 - len(head)
            ]
            for sector in range(16):
                self.blocks[sector * 4 + 3][:] = b"\xff" * 6 + TRANSPORT_ACCESS_BITS + b"\xff" * 6
        self.powered = False
        self._reset_state()

    def __repr__(self) -> str:
        return f"MifareClassic1K(uid=bytes.fromhex({self.uid.hex()!r}))"

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """ISO 14443-3 state name: IDLE, READY, ACTIVE, AUTHENTICATED or HALT."""
        return self._state

    def _reset_state(self) -> None:
        """Power-on state."""
        self._state = "IDLE"
        self._from_halt = False
        self._level = 1
        self._sector: int | None = None
        self._pending_write: int | None = None

    def power(self, on: bool) -> None:
        """The reader's field went on or off; a card losing power forgets everything."""
        self.powered = on
        self._reset_state()

    def _fail(self) -> None:
        """Unexpected frame: back to IDLE, or HALT when woken from HALT (ISO 14443-3)."""
        self._state = "HALT" if self._from_halt else "IDLE"
        self._sector = None
        self._pending_write = None
        self._level = 1

    def _cascade(self, level: int) -> bytes:
        """The 4 UID bytes sent at cascade ``level`` (1 or 2)."""
        if len(self.uid) == 4:
            return self.uid
        return bytes((CASCADE_TAG,)) + self.uid[:3] if level == 1 else self.uid[3:]

    def key(self, sector: int, key_type: str) -> bytes:
        """Current key A or B of ``sector``."""
        trailer = self.blocks[sector * 4 + 3]
        return bytes(trailer[:6] if key_type == "A" else trailer[10:])

    # -- air interface ----------------------------------------------------------------

    def receive(self, frame: bytes, last_bits: int, crypto: bool) -> _Reply | None:
        """Handle one frame from the reader; return the answer, or None for silence."""
        if not self.powered or not frame:
            return None
        if len(frame) == 1 and last_bits == 7:
            return self._short_frame(frame[0])
        if self._state in ("IDLE", "HALT"):
            return None
        if self._state == "READY":
            return self._anticollision(frame, last_bits)
        # ACTIVE or AUTHENTICATED: the link is encrypted once authenticated, so a plain
        # frame to an authenticated card (or the reverse) decrypts to garbage.
        if crypto != (self._state == "AUTHENTICATED") or last_bits:
            self._fail()
            return None
        if len(frame) < 3 or crc_a(frame[:-2]) != frame[-2:]:
            self._fail()
            return _Reply(_to_bits(bytes((NAK_TRANSMISSION,)), 4))
        payload = frame[:-2]
        if self._pending_write is not None:
            return self._write_data(payload)
        cmd = payload[0]
        if cmd == 0x50 and len(payload) == 2 and payload[1] == 0:
            self._state = "HALT"
            self._from_halt = True
            self._sector = None
            return None
        if cmd in (0x30, 0xA0) and len(payload) == 2:
            block = payload[1]
            if self._sector is None or block >= self.BLOCKS or block // 4 != self._sector:
                return self._nak()
            if cmd == 0x30:
                data = bytearray(self.blocks[block])
                if block % 4 == 3:
                    data[:6] = bytes(6)  # key A never reads back
                return _Reply(_to_bits(bytes(data) + crc_a(data)), has_crc=True)
            if block == 0:
                return self._nak()
            self._pending_write = block
            return _Reply(_to_bits(bytes((ACK,)), 4))
        self._fail()
        return None

    def _nak(self) -> _Reply:
        """Refuse an operation: 4-bit NAK, and the card leaves the ACTIVE state."""
        self._fail()
        return _Reply(_to_bits(bytes((NAK_NOT_ALLOWED,)), 4))

    def _short_frame(self, cmd: int) -> _Reply | None:
        """REQA (IDLE only) and WUPA (IDLE or HALT)."""
        if cmd == 0x26 and self._state == "IDLE" or cmd == 0x52 and self._state in (
            "IDLE",
            "HALT",
        ):
            self._from_halt = self._state == "HALT"
            self._state = "READY"
            self._level = 1
            return _Reply(_to_bits(self.atqa.to_bytes(2, "little")))
        if self._state not in ("IDLE", "HALT"):
            self._fail()
        return None

    def _anticollision(self, frame: bytes, last_bits: int) -> _Reply | None:
        """ANTICOLLISION (NVB < 0x70) and SELECT (NVB 0x70) at the current cascade level."""
        sel = 0x93 if self._level == 1 else 0x95
        if len(frame) < 2 or frame[0] != sel:
            self._fail()
            return None
        nvb = frame[1]
        nbytes, nbits = nvb >> 4, nvb & 0x0F
        cln = self._cascade(self._level)
        cln_bcc = cln + bytes((_bcc(cln),))
        if nvb == 0x70:
            if len(frame) != 9 or last_bits or crc_a(frame[:7]) != frame[7:]:
                self._fail()
                return None
            if frame[2:7] != cln_bcc:
                return None  # addressed to another card: stay READY, silent
            complete = len(self.uid) == 4 or self._level == 2
            sak = 0x08 if complete else 0x04
            if complete:
                self._state = "ACTIVE"
            else:
                self._level = 2
            return _Reply(_to_bits(bytes((sak,)) + crc_a((sak,))), has_crc=True)
        known = (nbytes - 2) * 8 + nbits
        if nbytes < 2 or nbits > 7 or known > 32 or len(frame) != nbytes + (1 if nbits else 0):
            self._fail()
            return None
        if (last_bits or 0) != nbits:
            self._fail()
            return None
        mine = _to_bits(cln_bcc)
        if _to_bits(frame[2:], known) != mine[:known]:
            return None  # the reader is singling out another card
        return _Reply(mine[known:])

    def _write_data(self, payload: bytes) -> _Reply | None:
        """Second step of WRITE: 16 bytes of data."""
        block, self._pending_write = self._pending_write, None
        if len(payload) != 16:
            return self._nak()
        if block % 4 == 3 and not _access_bits_valid(payload[6:10]):
            # A real card would accept this and lock the sector for ever; refusing keeps
            # a buggy test or enrolment from bricking emulated cards silently.
            return self._nak()
        self.blocks[block][:] = payload
        return _Reply(_to_bits(bytes((ACK,)), 4))

    def authenticate(self, cmd: int, block: int, key: bytes, uid4: bytes) -> bool:
        """MIFARE authentication as seen by MFAuthent: right key and UID -> AUTHENTICATED.

        For 7-byte UIDs the reader passes the last 4 UID bytes (NXP AN10927).
        """
        if not self.powered or self._state not in ("ACTIVE", "AUTHENTICATED"):
            return False
        ok = (
            cmd in (0x60, 0x61)
            and block < self.BLOCKS
            and uid4 == self.uid[-4:]
            and key == self.key(block // 4, "A" if cmd == 0x60 else "B")
        )
        if not ok:
            self._fail()
            return False
        self._state = "AUTHENTICATED"
        self._sector = block // 4
        return True


class EmulatedMFRC522:
    """An emulated MFRC522 (see the module docstring), driven through :meth:`transfer`.

    ``version`` is what ``VersionReg`` reports (0x92 = MFRC522 v2.0, 0x91 = v1.0).
    ``irq`` is the IRQ output: a callable ``irq(level: bool)`` or a gpiozero ``MockPin``
    (driven with ``drive_low()``/``drive_high()``). ``reset_pin`` is an optional gpiozero
    ``MockPin`` wired to NRSTPD: while it is low the chip is powered down (MISO reads
    0x00); a low pulse resets it, as on the real chip.
    """

    def __init__(
        self,
        *,
        version: int = 0x92,
        irq: Callable[[bool], Any] | Any | None = None,
        reset_pin: Any | None = None,
        seed: int | None = None,
    ) -> None:
        self.version = version
        self._irq = irq
        self._irq_level: bool | None = None
        self._reset_pin = reset_pin
        self._reset_seen = len(reset_pin.states) if reset_pin is not None else 0
        self._lock = threading.RLock()
        self._random = random.Random(seed)
        self.cards: list[MifareClassic1K] = []
        self.spi_transfers = 0
        self._silent = False
        self._garble_next = 0
        self._garble_rate = 0.0
        self._crc_faults = 0
        self._remove_countdown: int | None = None
        self._remove_card: MifareClassic1K | None = None
        self.garbled_transfers = 0
        self._reset_registers()

    # -- public: cards -----------------------------------------------------------------

    def present(self, card: MifareClassic1K) -> None:
        """A card enters the field (IDLE once the antenna powers it)."""
        with self._lock:
            if card not in self.cards:
                self.cards.append(card)
            card.power(self.antenna_on)

    def remove(self, card: MifareClassic1K | None = None) -> None:
        """``card`` (default: every card) leaves the field."""
        with self._lock:
            leaving = list(self.cards) if card is None else [card]
            for gone in leaving:
                if gone in self.cards:
                    self.cards.remove(gone)
                    gone.power(False)

    @property
    def antenna_on(self) -> bool:
        """True when TxControlReg drives at least one antenna pin (Tx1RFEn/Tx2RFEn)."""
        return bool(self._regs[TX_CONTROL] & 0x03)

    # -- public: faults -----------------------------------------------------------------

    def go_silent(self) -> None:
        """Hang like a real reader does after days: MISO all 0x00, writes ignored.

        Lasts until :meth:`recover` or a hard reset (a low pulse on ``reset_pin`` or
        :meth:`hard_reset`).
        """
        with self._lock:
            self._silent = True

    def recover(self, *, reset: bool = True) -> None:
        """Answer again; with ``reset`` the registers come back at their reset values."""
        with self._lock:
            self._silent = False
            if reset:
                self._reset_registers()

    def hard_reset(self) -> None:
        """What a low pulse on NRSTPD does: registers reset, field off, hang cleared."""
        with self._lock:
            self._silent = False
            self._reset_registers()

    def garble(self, next_transfers: int = 0, *, rate: float | None = None) -> None:
        """Flip a bit in the data returned by the next ``next_transfers`` register reads,
        and/or in each later read with probability ``rate`` (``rate=0`` stops it)."""
        with self._lock:
            self._garble_next = next_transfers
            if rate is not None:
                self._garble_rate = rate

    def corrupt_crc(self, responses: int = 1) -> None:
        """Corrupt the CRC_A of the next ``responses`` card answers that carry one
        (SAK, READ data), as RF noise does."""
        with self._lock:
            self._crc_faults = responses

    def remove_after(self, transfers: int, card: MifareClassic1K | None = None) -> None:
        """The card (default: every card) leaves the field after ``transfers`` more SPI
        transfers: a badge pulled away in the middle of a read."""
        with self._lock:
            self._remove_countdown = transfers
            self._remove_card = card

    def reset_transfer_count(self) -> None:
        """Set :attr:`spi_transfers` back to 0."""
        with self._lock:
            self.spi_transfers = 0

    # -- SPI -----------------------------------------------------------------------------

    def transfer(self, mosi: Sequence[int]) -> list[int]:
        """One SPI transaction (chip select low ... high); returns the MISO bytes."""
        with self._lock:
            self.spi_transfers += 1
            self._countdown_removal()
            self._watch_reset_pin()
            if not mosi:
                return []
            powered_down = self._reset_pin is not None and not self._reset_pin.state
            if self._silent or powered_down:
                return [0] * len(mosi)
            first = mosi[0]
            if first & 0x80:
                miso = [0]
                for addr_byte in mosi[:-1]:
                    miso.append(self._read((addr_byte >> 1) & 0x3F))
                return self._maybe_garble(miso)
            addr = (first >> 1) & 0x3F
            for value in mosi[1:]:
                self._write(addr, value & 0xFF)
            return [0] * len(mosi)

    def _countdown_removal(self) -> None:
        """Fault injection: a card leaves the field in the middle of a conversation."""
        if self._remove_countdown is None:
            return
        self._remove_countdown -= 1
        if self._remove_countdown <= 0:
            self._remove_countdown = None
            self.remove(self._remove_card)

    def _watch_reset_pin(self) -> None:
        """A low level seen on NRSTPD since the last transfer means a hard reset."""
        pin = self._reset_pin
        if pin is None:
            return
        new_states = pin.states[self._reset_seen :]
        self._reset_seen = len(pin.states)
        if any(not s.state for s in new_states) or not pin.state:
            self.hard_reset()

    def _maybe_garble(self, miso: list[int]) -> list[int]:
        """Fault injection: flip one bit of one data byte of a read."""
        if len(miso) < 2:
            return miso
        hit = False
        if self._garble_next > 0:
            self._garble_next -= 1
            hit = True
        elif self._garble_rate and self._random.random() < self._garble_rate:
            hit = True
        if hit:
            self.garbled_transfers += 1
            index = self._random.randrange(1, len(miso))
            miso[index] ^= 1 << self._random.randrange(8)
        return miso

    # -- registers -----------------------------------------------------------------------

    def _reset_registers(self) -> None:
        """Power-on / soft reset values; the field drops, so cards reset too."""
        self._regs = [0] * 64
        for addr, value in _RESET_VALUES.items():
            self._regs[addr] = value
        self._regs[VERSION] = self.version
        self._fifo: list[int] = []
        self._crc_state: int | None = None
        for card in self.cards:
            card.power(False)
        self._update_irq()

    @property
    def command(self) -> int:
        """The command currently running (CommandReg bits 0-3)."""
        return self._regs[COMMAND] & 0x0F

    def _read(self, addr: int) -> int:
        """Register read with the side effects of the real chip (FIFO pop)."""
        regs = self._regs
        if addr == FIFO_DATA:
            return self._fifo.pop(0) if self._fifo else 0
        if addr == FIFO_LEVEL:
            return len(self._fifo)
        if addr in (COM_IRQ, DIV_IRQ):
            return regs[addr] & 0x7F
        if addr == STATUS1:
            value = 0x20 if self._crc_state is None else 0x00  # CRCReady
            value |= 0x10 if self._irq_pending() else 0
            if len(self._fifo) <= regs[WATER_LEVEL]:
                value |= 0x01
            if _FIFO_SIZE - len(self._fifo) <= regs[WATER_LEVEL]:
                value |= 0x02
            return value
        return regs[addr]

    def _write(self, addr: int, value: int) -> None:
        """Register write with the semantics of the real chip."""
        regs = self._regs
        if addr == COMMAND:
            regs[COMMAND] = (value & 0x30) | (regs[COMMAND] & 0x0F)
            self._start(value & 0x0F)
        elif addr in (COM_IRQ, DIV_IRQ):
            mask = value & 0x7F
            regs[addr] = regs[addr] | mask if value & 0x80 else regs[addr] & ~mask & 0x7F
        elif addr in (ERROR, STATUS1, CRC_RESULT_M, CRC_RESULT_L, VERSION):
            pass  # read-only
        elif addr == STATUS2:
            crypto = regs[STATUS2] & value & MF_CRYPTO1_ON  # can only be cleared by software
            regs[STATUS2] = (value & 0xC0) | crypto
        elif addr == FIFO_DATA:
            if self.command == CMD_CALC_CRC:
                self._crc_update([value])
            elif len(self._fifo) < _FIFO_SIZE:
                self._fifo.append(value)
            else:
                regs[ERROR] |= BUFFER_OVFL
        elif addr == FIFO_LEVEL:
            if value & 0x80:
                self._fifo.clear()
                regs[ERROR] &= ~BUFFER_OVFL
        elif addr == CONTROL:
            regs[CONTROL] = (regs[CONTROL] & 0x07) | 0x10
        elif addr == BIT_FRAMING:
            regs[BIT_FRAMING] = value
            if value & 0x80 and self.command == CMD_TRANSCEIVE:
                self._transceive()
        elif addr == COLL:
            regs[COLL] = (regs[COLL] & 0x3F) | (value & 0x80)
        elif addr == TX_CONTROL:
            was_on = self.antenna_on
            regs[TX_CONTROL] = value
            if was_on != self.antenna_on:
                for card in self.cards:
                    card.power(self.antenna_on)
        else:
            regs[addr] = value
        self._update_irq()

    def _start(self, command: int) -> None:
        """Start ``command``, as a write to CommandReg does."""
        regs = self._regs
        self._crc_state = None
        if command == CMD_SOFT_RESET:
            self._reset_registers()
            return
        if command == CMD_NO_CHANGE:
            return
        regs[COMMAND] = (regs[COMMAND] & 0xF0) | command
        if command == CMD_IDLE:
            return  # IdleIRq is not set when the host itself starts Idle
        regs[ERROR] &= BUFFER_OVFL
        if command == CMD_CALC_CRC:
            self._crc_state = _CRC_PRESETS[regs[MODE] & 0x03]
            data, self._fifo = self._fifo, []
            self._crc_update(data)  # keeps running: later FIFO bytes are added too
        elif command == CMD_TRANSCEIVE:
            if regs[BIT_FRAMING] & 0x80:
                self._transceive()
        elif command == CMD_MF_AUTHENT:
            self._mf_authent()
        elif command == CMD_TRANSMIT:
            self._air(bytes(self._fifo), regs[BIT_FRAMING] & 0x07)
            self._fifo.clear()
            self._finish(TX_IRQ | IDLE_IRQ)
        elif command in (CMD_MEM, CMD_RANDOM_ID):
            self._finish(IDLE_IRQ)
        # CMD_RECEIVE: waits for a card that never speaks first; harmless.

    def _finish(self, irq: int) -> None:
        """The running command ended by itself."""
        self._regs[COMMAND] &= 0xF0
        self._regs[COM_IRQ] |= irq

    def _crc_update(self, data: Iterable[int]) -> None:
        """Feed bytes to the CRC coprocessor and publish the running result."""
        result = crc_a(data, self._crc_state)
        self._crc_state = result[0] | (result[1] << 8)
        self._regs[CRC_RESULT_L], self._regs[CRC_RESULT_M] = result[0], result[1]
        self._regs[DIV_IRQ] |= CRC_IRQ

    def _timeout(self) -> None:
        """Nobody answered: with TAuto the timer runs out; the command keeps running."""
        if self._regs[T_MODE] & 0x80:
            self._regs[COM_IRQ] |= TIMER_IRQ

    def _air(self, frame: bytes, last_bits: int) -> list[_Reply]:
        """Send ``frame`` to every powered card; collect the answers."""
        if not self.antenna_on:
            return []
        crypto = bool(self._regs[STATUS2] & MF_CRYPTO1_ON)
        replies = []
        for card in list(self.cards):
            reply = card.receive(frame, last_bits, crypto)
            if reply is not None:
                replies.append(reply)
        return replies

    def _transceive(self) -> None:
        """Transmit the FIFO (TxLastBits), receive the answers into it (RxAlign)."""
        regs = self._regs
        framing = regs[BIT_FRAMING]
        frame = bytes(self._fifo)
        self._fifo.clear()
        regs[ERROR] &= BUFFER_OVFL
        regs[COM_IRQ] |= TX_IRQ
        replies = self._air(frame, framing & 0x07)
        for reply in replies:
            if reply.has_crc and self._crc_faults > 0:
                self._crc_faults -= 1
                reply.bits[-1] ^= 1
        if not replies:
            self._timeout()
            return
        rx_align = (framing >> 4) & 0x07
        bits, coll_index = self._superpose([r.bits for r in replies])
        coll = regs[COLL] & 0x80
        if coll_index is not None:
            regs[ERROR] |= COLL_ERR
            position = rx_align + coll_index + 1
            coll |= 0x20 if position > 32 else position & 0x1F
        regs[COLL] = coll
        total = rx_align + len(bits)
        padded = [0] * rx_align + bits + [0] * (-total % 8)
        data = [
            sum(bit << i for i, bit in enumerate(padded[n : n + 8]))
            for n in range(0, len(padded), 8)
        ]
        room = _FIFO_SIZE - len(self._fifo)
        if len(data) > room:
            regs[ERROR] |= BUFFER_OVFL
            data = data[:room]
        self._fifo.extend(data)
        regs[CONTROL] = (regs[CONTROL] & 0xF8) | (total % 8)
        regs[COM_IRQ] |= RX_IRQ | (ERR_IRQ if regs[ERROR] & ~BUFFER_OVFL else 0)

    def _superpose(self, answers: list[list[int]]) -> tuple[list[int], int | None]:
        """Bits as the receiver hears several cards at once, and the first collision."""
        length = max(len(a) for a in answers)
        out: list[int] = []
        collision = None
        for i in range(length):
            values = {a[i] if i < len(a) else None for a in answers}
            if len(values) == 1 and None not in values:
                out.append(values.pop())
                continue
            if collision is None:
                collision = i
            # ValuesAfterColl = 0 clears the bits received after a collision.
            out.append(1 if self._regs[COLL] & 0x80 else 0)
        return out, collision

    def _mf_authent(self) -> None:
        """MFAuthent: FIFO = cmd, block, 6-byte key, 4 UID bytes."""
        data = bytes(self._fifo)
        self._fifo.clear()
        self._regs[STATUS2] &= ~MF_CRYPTO1_ON
        ok = False
        if len(data) >= 12 and self.antenna_on:
            for card in self.cards:
                if card.authenticate(data[0], data[1], data[2:8], data[8:12]):
                    ok = True
        if ok:
            self._regs[STATUS2] |= MF_CRYPTO1_ON
            self._finish(IDLE_IRQ)
        else:
            self._timeout()  # the card stops answering; MFAuthent does not end by itself

    # -- IRQ pin -------------------------------------------------------------------------

    def _irq_pending(self) -> bool:
        """Status1Reg IRq: an enabled interrupt source is set."""
        regs = self._regs
        return bool(regs[COM_IRQ] & regs[COM_IEN] & 0x7F or regs[DIV_IRQ] & regs[DIV_IEN] & 0x14)

    def _update_irq(self) -> None:
        """Drive the IRQ output: IRq, inverted when ComIEnReg IRqInv is set."""
        if self._irq is None:
            return
        level = self._irq_pending() != bool(self._regs[COM_IEN] & 0x80)
        if level == self._irq_level:
            return
        self._irq_level = level
        if callable(self._irq):
            self._irq(level)
        elif level:
            self._irq.drive_high()
        else:
            self._irq.drive_low()


class EmulatedSpiDev:
    """A ``spidev.SpiDev`` look-alike wired to an :class:`EmulatedMFRC522`."""

    def __init__(self, chip: EmulatedMFRC522) -> None:
        self.chip = chip
        self.max_speed_hz = 1_000_000
        self.mode = 0
        self.bits_per_word = 8
        self.bus: int | None = None
        self.device: int | None = None
        self._open = True

    def open(self, bus: int, device: int) -> None:
        """Open /dev/spidev<bus>.<device> (nothing to do in emulation)."""
        self.bus, self.device = bus, device
        self._open = True

    def close(self) -> None:
        """Release the device; later transfers fail like spidev's."""
        self._open = False

    def xfer2(self, values: Sequence[int], *_args: Any) -> list[int]:
        """Full-duplex transfer with chip select held for the whole list."""
        if not self._open:
            raise OSError(9, "Bad file descriptor (SPI device closed)")
        return self.chip.transfer([int(v) & 0xFF for v in values])

    def xfer(self, values: Sequence[int], *args: Any) -> list[int]:
        """Same as xfer2 here (the MFRC522 needs chip select held anyway)."""
        return self.xfer2(values, *args)

    def xfer3(self, values: Sequence[int], *args: Any) -> list[int]:
        """Same as xfer2 here (no 4096-byte block limit in emulation)."""
        return self.xfer2(values, *args)

    def writebytes(self, values: Sequence[int]) -> None:
        """Write-only transfer."""
        self.xfer2(values)

    def writebytes2(self, values: Sequence[int]) -> None:
        """Write-only transfer."""
        self.xfer2(values)

    def readbytes(self, length: int) -> list[int]:
        """Read-only transfer (MOSI all 0x00, which the chip sees as writes to reg 0)."""
        return self.xfer2([0] * length)
