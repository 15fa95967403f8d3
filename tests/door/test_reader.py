"""BadgeReader through the emulated MFRC522: the same register traffic as on a Pi."""

import random

import pytest
from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins.mock import MockFactory

from appliance.door.reader import BadgeReader, CardRead
from appliance.hardware.mfrc522_emulator import EmulatedMFRC522, EmulatedSpiDev, MifareClassic1K

UID4 = bytes.fromhex("deadbeef")
UID7 = bytes.fromhex("04112233445566")


class FakeTime:
    """Injected clock; sleep() records but does not advance it (tests move time)."""

    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)


@pytest.fixture
def t():
    return FakeTime()


@pytest.fixture
def chip():
    return EmulatedMFRC522()


@pytest.fixture
def reader(chip, t):
    r = BadgeReader(EmulatedSpiDev(chip), clock=t.clock, sleep=t.sleep)
    assert r.open()
    return r


def poll_until(reader, n=5):
    """Poll a few times; the first card returned, or None."""
    for _ in range(n):
        card = reader.poll()
        if card is not None:
            return card
    return None


def test_open_reads_version(reader):
    assert reader.reader_up and reader.version == 0x92 and reader.errors == 0


def test_empty_poll_at_most_10_transfers(chip, reader, t):
    for _ in range(20):
        chip.reset_transfer_count()
        assert reader.poll() is None
        assert chip.spi_transfers <= 10
    assert chip.spi_transfers == 8  # 7 writes + 1 status read
    # A health check falls due: one more read, still within budget.
    t.now += 5.0
    chip.reset_transfer_count()
    assert reader.poll() is None
    assert chip.spi_transfers == 9


def test_empty_poll_after_a_card_session_is_still_bounded(chip, reader):
    card = MifareClassic1K(UID4)
    chip.present(card)
    got = reader.poll()
    assert reader.authenticate(4, b"\xff" * 6) and reader.read_block(4) is not None
    reader.release()
    chip.remove()
    assert reader.poll() is None  # notices the card left (WUPA)
    chip.reset_transfer_count()
    assert reader.poll() is None
    assert chip.spi_transfers <= 10
    assert got.uid == UID4


def test_4_byte_card(chip, reader):
    chip.present(MifareClassic1K(UID4))
    assert reader.poll() == CardRead(uid=UID4, sak=0x08, atqa=0x0004)


def test_7_byte_card_whole_uid(chip, reader):
    chip.present(MifareClassic1K(UID7))
    assert reader.poll() == CardRead(uid=UID7, sak=0x08, atqa=0x0044)


def test_two_7_byte_cards_sharing_first_3_bytes_are_distinct(chip, reader):
    a = MifareClassic1K(bytes.fromhex("04aabbcc000001"))
    b = MifareClassic1K(bytes.fromhex("04aabbcc800002"))
    chip.present(a)
    assert reader.poll().uid == a.uid
    reader.release()
    chip.remove()
    assert reader.poll() is None
    chip.present(b)
    assert reader.poll().uid == b.uid


def test_two_cards_in_the_field_at_once_both_reported_once(chip, reader):
    a = MifareClassic1K(bytes.fromhex("04aabbcc000001"))
    b = MifareClassic1K(bytes.fromhex("04aabbcc800002"))
    c = MifareClassic1K(bytes.fromhex("04aabbcc800003"))
    for card in (a, b, c):
        chip.present(card)
    seen = []
    for _ in range(8):
        card = reader.poll()
        if card:
            seen.append(card.uid)
        reader.release()
    assert sorted(seen) == sorted([a.uid, b.uid, c.uid])
    assert reader.errors == 0


def test_held_card_counts_once_and_again_after_removal(chip, reader):
    card = MifareClassic1K(UID4)
    chip.present(card)
    assert reader.poll().uid == UID4
    reader.release()
    assert card.state == "HALT"
    for _ in range(5):
        assert reader.poll() is None  # still held
    chip.remove()
    assert reader.poll() is None  # notices it left
    chip.present(card)
    assert reader.poll().uid == UID4


def test_unreleased_card_is_released_by_next_poll(chip, reader):
    card = MifareClassic1K(UID7)
    chip.present(card)
    assert reader.poll().uid == UID7
    assert reader.authenticate(4, b"\xff" * 6)
    assert reader.poll() is None
    assert reader.current is None
    assert card.state == "HALT"
    assert not chip._regs[0x08] & 0x08  # Crypto1 stopped


def test_new_card_while_another_is_held(chip, reader):
    a, b = MifareClassic1K(UID4), MifareClassic1K(UID7)
    chip.present(a)
    assert reader.poll().uid == UID4
    reader.release()
    chip.present(b)
    assert reader.poll().uid == UID7
    reader.release()
    assert reader.poll() is None


def test_known_card_leaves_while_new_one_arrives(chip, reader):
    a, b = MifareClassic1K(UID4), MifareClassic1K(UID7)
    chip.present(a)
    assert reader.poll().uid == UID4
    reader.release()
    chip.remove(a)
    chip.present(b)
    assert reader.poll().uid == UID7


def test_irq_pin_path(t):
    factory = MockFactory()
    irq = DigitalInputDevice(24, pull_up=True, pin_factory=factory)
    reset = DigitalOutputDevice(25, initial_value=True, pin_factory=factory)
    irq_pin, reset_pin = factory.pin(24), factory.pin(25)
    chip = EmulatedMFRC522(irq=irq_pin, reset_pin=reset_pin)
    reader = BadgeReader(EmulatedSpiDev(chip), reset=reset, irq=irq, clock=t.clock, sleep=t.sleep)
    assert reader.open()
    assert [s.state for s in reset_pin.states][-2:] == [False, True]  # hard reset pulse
    t.slept.clear()
    chip.reset_transfer_count()
    assert reader.poll() is None
    assert chip.spi_transfers == 8
    assert not irq_pin.state  # the chip pulled IRQ low (timer: nobody there)
    assert all(s >= 0.04 for s in t.slept)  # no polling sleeps: waited on the pin
    chip.present(MifareClassic1K(UID7))
    assert reader.poll().uid == UID7
    # With the IRQ line never asserted the reader must not believe the chip.
    irq_dead = DigitalInputDevice(23, pull_up=True, pin_factory=factory)
    chip2 = EmulatedMFRC522()
    reader2 = BadgeReader(EmulatedSpiDev(chip2), irq=irq_dead, clock=t.clock, sleep=t.sleep)
    assert reader2.open()
    chip2.present(MifareClassic1K(UID4))
    assert reader2.poll().uid == UID4  # status is still read once after the wait


def test_authenticate_read_write(chip, reader):
    card = MifareClassic1K(UID7)
    chip.present(card)
    reader.poll()
    assert not reader.authenticate(4, b"\x00" * 6)  # wrong key
    assert reader.authenticate(4, b"\xff" * 6)  # the card was woken again for a retry
    assert reader.write_block(5, bytes(range(16)))
    assert reader.read_block(5) == bytes(range(16))
    assert bytes(card.blocks[5]) == bytes(range(16))
    assert reader.read_block(8) is None  # other sector: NAK
    assert reader.authenticate(8, b"\xff" * 6, "B")
    assert reader.read_block(8) == bytes(16)
    reader.release()
    assert reader.current is None
    with pytest.raises(RuntimeError):
        reader.read_block(4)


def test_crc_error_gives_none_and_counts(chip, reader):
    chip.present(MifareClassic1K(UID4))
    chip.corrupt_crc(1)  # the SAK's CRC
    assert reader.poll() is None
    assert reader.errors == 1
    assert poll_until(reader).uid == UID4
    assert reader.authenticate(4, b"\xff" * 6)
    chip.corrupt_crc(1)  # READ data
    assert reader.read_block(4) is None
    assert reader.errors == 2
    assert reader.authenticate(4, b"\xff" * 6)
    assert reader.read_block(4) == bytes(16)


def test_card_removed_mid_read(chip, reader):
    card = MifareClassic1K(UID4)
    chip.present(card)
    assert reader.poll().uid == UID4
    assert reader.authenticate(4, b"\xff" * 6)
    chip.remove_after(3)
    assert reader.read_block(4) is None
    assert reader.poll() is None
    assert reader.reader_up
    chip.present(card)
    assert reader.poll().uid == UID4  # it left, so it counts again


@pytest.mark.parametrize("after", range(1, 60, 3))
def test_card_removed_mid_poll_never_wrong(chip, reader, after):
    chip.present(MifareClassic1K(UID7))
    chip.remove_after(after)
    card = reader.poll()
    assert card is None or card.uid == UID7
    assert poll_until(reader) is None


def test_garbled_spi_never_gives_a_wrong_uid(chip, reader):
    chip._random.seed(1234)
    rng = random.Random(99)
    cards = [MifareClassic1K(UID4), MifareClassic1K(UID7)]
    chip.garble(rate=0.05)
    right = 0
    for i in range(300):
        card = cards[i % 2]
        chip.present(card)
        got = poll_until(reader, 3)
        if got is not None:
            assert got.uid == card.uid
            right += 1
        if got is not None and rng.random() < 0.5:
            if reader.authenticate(4, b"\xff" * 6):
                assert reader.read_block(4) in (None, bytes(16))
        reader.release()
        chip.remove()
        poll_until(reader, 3)
    assert chip.garbled_transfers > 100
    assert reader.errors > 0
    assert right > 150  # garbling costs reads, but most taps still work


def test_every_single_bit_flip_position(chip, reader):
    """Flip each returned byte of one poll in turn: never a wrong UID."""
    chip.present(MifareClassic1K(UID7))
    chip.reset_transfer_count()
    assert reader.poll().uid == UID7
    reads = chip.spi_transfers
    reader.release()
    chip.remove()
    reader.poll()
    for nth in range(reads):
        for bit in range(8):
            chip.present(MifareClassic1K(UID7))
            chip._garble_next = 0
            original = chip._maybe_garble

            def once(miso, nth=nth, bit=bit, state={"n": 0}, original=original):  # noqa: B006
                if len(miso) > 1:
                    if state["n"] == nth:
                        miso[1] ^= 1 << bit
                    state["n"] += 1
                return miso

            chip._maybe_garble = once
            got = reader.poll()
            chip._maybe_garble = original
            assert got is None or got.uid == UID7
            reader.release()
            chip.remove()
            poll_until(reader, 3)


def test_silent_chip_backoff_and_recovery(chip, t):
    reader = BadgeReader(EmulatedSpiDev(chip), clock=t.clock, sleep=t.sleep, health_interval=5)
    assert reader.open()
    chip.go_silent()
    t.now += 5  # health check due
    assert reader.poll() is None
    assert not reader.reader_up
    assert reader.errors == 1
    down_at = t.now
    attempts = []
    for step in range(400):  # 200 s in half-second steps
        t.now = down_at + step * 0.5
        chip.reset_transfer_count()
        reader.poll()
        if chip.spi_transfers:
            attempts.append(t.now - down_at)
    # Retries at +1, then gaps doubling to 60 s.
    assert attempts[:6] == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]
    assert attempts[6] - attempts[5] == 60.0
    assert not reader.reader_up
    assert reader.errors == 1  # one outage, one error
    chip.recover()
    t.now = down_at + attempts[-1] + 60
    reader.poll()
    assert reader.reader_up
    chip.present(MifareClassic1K(UID4))
    assert reader.poll().uid == UID4


def test_hung_chip_recovered_by_hard_reset(t):
    factory = MockFactory()
    reset = DigitalOutputDevice(25, initial_value=True, pin_factory=factory)
    chip = EmulatedMFRC522(reset_pin=factory.pin(25))
    reader = BadgeReader(EmulatedSpiDev(chip), reset=reset, clock=t.clock, sleep=t.sleep)
    assert reader.open()
    chip.go_silent()  # only a hard reset clears it
    assert reader.poll() is None
    assert not reader.reader_up
    t.now += 1
    reader.poll()
    assert reader.reader_up
    chip.present(MifareClassic1K(UID4))
    assert reader.poll().uid == UID4


def test_fault_mid_poll_marks_down(chip, reader):
    chip.present(MifareClassic1K(UID4))
    chip.remove_after(2)
    chip.go_silent()
    assert reader.poll() is None
    assert not reader.reader_up


def test_close_turns_antenna_off_and_closes_spi(chip, reader):
    card = MifareClassic1K(UID4)
    chip.present(card)
    reader.poll()
    reader.close()
    assert not chip.antenna_on
    assert not reader.reader_up
    with pytest.raises(OSError):
        reader._spi.xfer2([0xEE, 0])


def test_cards_presented_from_another_thread(chip, reader):
    """The demo taps cards from a web thread while the door loop polls."""
    import threading

    card = MifareClassic1K(UID7)
    stop = threading.Event()

    def tapper():
        while not stop.is_set():
            chip.present(card)
            chip.remove(card)

    thread = threading.Thread(target=tapper)
    thread.start()
    try:
        for _ in range(300):
            got = reader.poll()
            assert got is None or got.uid == UID7
            reader.release()
    finally:
        stop.set()
        thread.join()
    assert reader.reader_up
