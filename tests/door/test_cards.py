"""MIFARE Classic tokens with diversified keys, through BadgeReader and the emulator."""

import pytest

from appliance.door.cards import (
    DEFAULT_KEY,
    TOKEN_BLOCK,
    TRAILER_BLOCK,
    diversified_keys,
    read_token,
    write_token,
)
from appliance.door.reader import BadgeReader
from appliance.hardware.mfrc522_emulator import EmulatedMFRC522, EmulatedSpiDev, MifareClassic1K

SECRET = b"site secret for tests, 32 bytes!"
TOKEN = bytes(range(0x10, 0x20))
UID7 = bytes.fromhex("04112233445566")


@pytest.fixture
def chip():
    return EmulatedMFRC522()


@pytest.fixture
def reader(chip):
    r = BadgeReader(EmulatedSpiDev(chip), sleep=lambda s: None)
    assert r.open()
    return r


def tap(chip, reader, card):
    """Present ``card`` alone and return the reader's CardRead."""
    chip.remove()
    reader.poll()
    chip.present(card)
    got = reader.poll()
    assert got is not None and got.uid == card.uid
    return got


def test_diversified_keys_properties():
    a, b = diversified_keys(SECRET, UID7)
    assert len(a) == len(b) == 6 and a != b
    assert diversified_keys(SECRET, UID7) == (a, b)
    assert diversified_keys(SECRET, UID7[:4])[0] != a
    assert diversified_keys(b"other site", UID7)[0] != a
    assert DEFAULT_KEY not in (a, b)
    with pytest.raises(ValueError):
        diversified_keys(b"", UID7)


@pytest.mark.parametrize("uid", [bytes.fromhex("deadbeef"), UID7])
def test_write_then_read_token(chip, reader, uid):
    card = MifareClassic1K(uid)
    got = tap(chip, reader, card)
    assert write_token(reader, got, SECRET, TOKEN)
    key_a, key_b = diversified_keys(SECRET, uid)
    assert card.key(1, "A") == key_a and card.key(1, "B") == key_b
    assert bytes(card.blocks[TOKEN_BLOCK]) == TOKEN
    assert bytes(card.blocks[TRAILER_BLOCK][6:10]) == bytes.fromhex("ff078069")
    reader.release()
    got = tap(chip, reader, card)
    assert read_token(reader, got, SECRET) == TOKEN


def test_re_enrolment_with_diversified_key(chip, reader):
    card = MifareClassic1K(UID7)
    assert write_token(reader, tap(chip, reader, card), SECRET, TOKEN)
    reader.release()
    new_token = bytes(16)
    assert write_token(reader, tap(chip, reader, card), SECRET, new_token)
    reader.release()
    assert read_token(reader, tap(chip, reader, card), SECRET) == new_token


def test_uid_clone_has_no_token(chip, reader):
    genuine = MifareClassic1K(UID7)
    assert write_token(reader, tap(chip, reader, genuine), SECRET, TOKEN)
    reader.release()
    clone = MifareClassic1K(UID7)  # same UID, blank sectors
    got = tap(chip, reader, clone)
    assert read_token(reader, got, SECRET) is None


def test_other_site_secret_reads_nothing(chip, reader):
    card = MifareClassic1K(UID7)
    assert write_token(reader, tap(chip, reader, card), SECRET, TOKEN)
    reader.release()
    assert read_token(reader, tap(chip, reader, card), b"another site") is None


def test_foreign_keys_cannot_be_enrolled(chip, reader):
    card = MifareClassic1K(UID7)
    card.blocks[TRAILER_BLOCK][:6] = b"\x01" * 6  # someone else's card
    assert not write_token(reader, tap(chip, reader, card), SECRET, TOKEN)
    assert bytes(card.blocks[TOKEN_BLOCK]) == bytes(16)


def test_card_removed_during_write(chip, reader):
    card = MifareClassic1K(UID7)
    got = tap(chip, reader, card)
    chip.remove_after(12)
    assert not write_token(reader, got, SECRET, TOKEN)


def test_read_token_on_crc_error(chip, reader):
    card = MifareClassic1K(UID7)
    assert write_token(reader, tap(chip, reader, card), SECRET, TOKEN)
    reader.release()
    got = tap(chip, reader, card)
    chip.corrupt_crc(1)
    assert read_token(reader, got, SECRET) is None
    assert read_token(reader, got, SECRET) == TOKEN  # the next try works


def test_token_must_be_16_bytes_and_card_current(chip, reader):
    got = tap(chip, reader, MifareClassic1K(UID7))
    with pytest.raises(ValueError):
        write_token(reader, got, SECRET, b"short")
    reader.release()
    with pytest.raises(ValueError):
        read_token(reader, got, SECRET)
