"""The emulated MFRC522, checked against the mfrc522 package's own (real) driver code."""

import sys

import pytest

from appliance.hardware.mfrc522_compat import MFRC522, MissingHardwareModule, new_driver
from appliance.hardware.mfrc522_emulator import (
    EmulatedMFRC522,
    EmulatedSpiDev,
    MifareClassic1K,
    crc_a,
)

UID4 = bytes.fromhex("deadbeef")


@pytest.fixture
def chip():
    return EmulatedMFRC522()


@pytest.fixture
def driver(chip):
    d = new_driver(EmulatedSpiDev(chip))
    d.MFRC522_Init()  # the package's own init: soft reset, TAuto timer, antenna on
    return d


def test_compat_imports_without_gpio_and_leaves_no_placeholder():
    assert MFRC522.__name__ == "MFRC522"
    assert not isinstance(sys.modules.get("RPi.GPIO"), MissingHardwareModule)
    assert not isinstance(sys.modules.get("spidev"), MissingHardwareModule)
    module = sys.modules["mfrc522.MFRC522"]
    if isinstance(module.GPIO, MissingHardwareModule):
        with pytest.raises(RuntimeError, match="RPi.GPIO.cleanup"):
            module.GPIO.cleanup()


def test_new_driver_skips_init(chip):
    spi = EmulatedSpiDev(chip)
    d = new_driver(spi)
    assert d.spi is spi
    assert chip.spi_transfers == 0  # __init__ (GPIO setup + MFRC522_Init) did not run


def test_crc_a_reference_values():
    # ISO/IEC 14443-3 annex B examples.
    assert crc_a(b"\x00\x00") == bytes((0xA0, 0x1E))
    assert crc_a(b"\x12\x34") == bytes((0x26, 0xCF))
    assert crc_a(b"\x50\x00") == bytes((0x57, 0xCD))  # HLTA


def test_version_register(chip, driver):
    assert driver.Read_MFRC522(driver.VersionReg) == 0x92
    assert new_driver(EmulatedSpiDev(EmulatedMFRC522(version=0x91))).Read_MFRC522(0x37) == 0x91


def test_package_reads_and_writes_a_4_byte_card(chip, driver):
    card = MifareClassic1K(UID4)
    chip.present(card)
    status, bits = driver.MFRC522_Request(driver.PICC_REQIDL)
    assert (status, bits) == (driver.MI_OK, 16)
    status, uid = driver.MFRC522_Anticoll()
    assert status == driver.MI_OK
    assert uid == list(UID4) + [0xDE ^ 0xAD ^ 0xBE ^ 0xEF]
    assert driver.MFRC522_SelectTag(uid) == 0x08
    assert driver.MFRC522_Auth(driver.PICC_AUTHENT1A, 7, [0xFF] * 6, uid) == driver.MI_OK
    assert driver.Read_MFRC522(driver.Status2Reg) & 0x08
    assert driver.MFRC522_Read(4) == [0] * 16
    driver.MFRC522_Write(4, list(range(16)))
    assert driver.MFRC522_Read(4) == list(range(16))
    assert bytes(card.blocks[4]) == bytes(range(16))
    # Block 0 belongs to sector 0: outside the authenticated sector the card NAKs.
    assert driver.MFRC522_Read(0) is None
    driver.MFRC522_StopCrypto1()
    assert not driver.Read_MFRC522(driver.Status2Reg) & 0x08


def test_package_auth_with_wrong_key_fails(chip, driver):
    chip.present(MifareClassic1K(UID4))
    driver.MFRC522_Request(driver.PICC_REQIDL)
    _, uid = driver.MFRC522_Anticoll()
    driver.MFRC522_SelectTag(uid)
    assert driver.MFRC522_Auth(driver.PICC_AUTHENT1A, 7, [0] * 6, uid) != driver.MI_OK
    assert not driver.Read_MFRC522(driver.Status2Reg) & 0x08


def test_package_empty_poll_costs_about_2000_transfers(chip, driver):
    """The contrast BadgeReader exists for: MFRC522_ToCard busy-waits on CommIrqReg and
    does not stop on TimerIRq, so every empty poll reads the chip ~2,000 times."""
    chip.reset_transfer_count()
    status, _ = driver.MFRC522_Request(driver.PICC_REQIDL)
    assert status == driver.MI_ERR
    assert 2000 <= chip.spi_transfers <= 2020


def test_timer_irq_and_command_stays_transceive(chip, driver):
    driver.Write_MFRC522(driver.CommIrqReg, 0x7F)
    driver.Write_MFRC522(driver.BitFramingReg, 0x07)
    driver.Write_MFRC522(driver.FIFODataReg, 0x26)
    driver.Write_MFRC522(driver.CommandReg, driver.PCD_TRANSCEIVE)
    driver.SetBitMask(driver.BitFramingReg, 0x80)
    assert driver.Read_MFRC522(driver.CommIrqReg) & 0x01  # TimerIRq
    assert driver.Read_MFRC522(driver.CommandReg) & 0x0F == driver.PCD_TRANSCEIVE
    driver.Write_MFRC522(driver.CommandReg, driver.PCD_IDLE)
    assert driver.Read_MFRC522(driver.CommandReg) & 0x0F == driver.PCD_IDLE


def test_comirq_set1_semantics(chip, driver):
    driver.Write_MFRC522(driver.CommIrqReg, 0x7F)  # Set1=0: clear all
    assert driver.Read_MFRC522(driver.CommIrqReg) == 0
    driver.Write_MFRC522(driver.CommIrqReg, 0x80 | 0x21)  # Set1=1: set RxIRq, TimerIRq
    assert driver.Read_MFRC522(driver.CommIrqReg) == 0x21
    driver.ClearBitMask(driver.CommIrqReg, 0x80)  # the package's way of clearing
    assert driver.Read_MFRC522(driver.CommIrqReg) == 0


def test_fifo_flush_and_overflow(chip, driver):
    spi = driver.spi
    spi.xfer2([0x09 << 1] + list(range(70)))
    assert driver.Read_MFRC522(driver.FIFOLevelReg) == 64
    assert driver.Read_MFRC522(driver.ErrorReg) & 0x10  # BufferOvfl
    # Several registers in one read transfer, as the datasheet allows.
    assert spi.xfer2([0x92, 0x92, 0x94, 0]) == [0, 0, 1, 64 - 2]
    driver.SetBitMask(driver.FIFOLevelReg, 0x80)
    assert driver.Read_MFRC522(driver.FIFOLevelReg) == 0
    assert not driver.Read_MFRC522(driver.ErrorReg) & 0x10


def test_calc_crc_matches_software(chip, driver):
    assert driver.CalulateCRC([0x30, 0x04]) == list(crc_a(b"\x30\x04"))
    assert driver.Read_MFRC522(driver.DivlEnReg + 2) & 0x04  # DivIrqReg CRCIRq


def test_soft_reset_restores_registers_and_drops_the_field(chip, driver):
    card = MifareClassic1K(UID4)
    chip.present(card)
    assert card.powered
    driver.Write_MFRC522(driver.TModeReg, 0x8D)
    driver.MFRC522_Reset()
    assert driver.Read_MFRC522(driver.TModeReg) == 0x00
    assert driver.Read_MFRC522(driver.TxControlReg) == 0x80
    assert not chip.antenna_on and not card.powered


def test_antenna_off_no_card_answers(chip, driver):
    chip.present(MifareClassic1K(UID4))
    driver.AntennaOff()
    assert driver.MFRC522_Request(driver.PICC_REQIDL)[0] == driver.MI_ERR


def test_reqa_only_in_idle_wupa_also_in_halt(chip, driver):
    card = MifareClassic1K(UID4)
    chip.present(card)
    driver.MFRC522_Request(driver.PICC_REQIDL)
    _, uid = driver.MFRC522_Anticoll()
    driver.MFRC522_SelectTag(uid)
    assert card.state == "ACTIVE"
    halt = [0x50, 0x00]
    driver.MFRC522_ToCard(driver.PCD_TRANSCEIVE, halt + driver.CalulateCRC(halt))
    assert card.state == "HALT"
    assert driver.MFRC522_Request(driver.PICC_REQIDL)[0] == driver.MI_ERR
    assert driver.MFRC522_Request(driver.PICC_REQALL) == (driver.MI_OK, 16)
    assert card.state == "READY"


def test_7_byte_card_cascade_and_package_truncation(chip, driver):
    uid = bytes.fromhex("04112233445566")
    card = MifareClassic1K(uid)
    assert card.atqa == 0x0044
    chip.present(card)
    assert driver.MFRC522_Request(driver.PICC_REQIDL) == (driver.MI_OK, 16)
    status, cl1 = driver.MFRC522_Anticoll()
    # The package stops here: cascade tag + 3 bytes, the "UID" it would report.
    assert status == driver.MI_OK and cl1[:4] == [0x88, 0x04, 0x11, 0x22]
    assert driver.MFRC522_SelectTag(cl1) == 0x04  # SAK: cascade bit, UID not complete


def test_irq_output_follows_comien_and_irqinv(chip, driver):
    levels = []
    chip2 = EmulatedMFRC522(irq=levels.append)
    d = new_driver(EmulatedSpiDev(chip2))
    d.MFRC522_Init()
    d.Write_MFRC522(d.CommIEnReg, 0x80 | 0x01)  # TimerIEn, active low
    d.Write_MFRC522(d.CommIrqReg, 0x7F)
    assert levels[-1] is True
    d.Write_MFRC522(d.BitFramingReg, 0x07)
    d.Write_MFRC522(d.FIFODataReg, 0x26)
    d.Write_MFRC522(d.CommandReg, d.PCD_TRANSCEIVE)
    d.SetBitMask(d.BitFramingReg, 0x80)
    assert levels[-1] is False  # empty field: TimerIRq pulls IRQ low
    d.Write_MFRC522(d.CommIrqReg, 0x7F)
    assert levels[-1] is True


def test_collision_reported_with_position(chip, driver):
    chip.present(MifareClassic1K(bytes.fromhex("10000000")))
    chip.present(MifareClassic1K(bytes.fromhex("11000000")))
    assert driver.MFRC522_Request(driver.PICC_REQIDL)[0] == driver.MI_OK  # same ATQA
    status, _ = driver.MFRC522_Anticoll()
    assert status == driver.MI_ERR
    assert driver.Read_MFRC522(driver.ErrorReg) & 0x08  # CollErr
    assert driver.Read_MFRC522(driver.CollReg) & 0x1F == 1  # first bit differs


def test_silent_chip_and_recovery(chip, driver):
    chip.go_silent()
    assert driver.Read_MFRC522(driver.VersionReg) == 0x00
    chip.recover()
    assert driver.Read_MFRC522(driver.VersionReg) == 0x92


def test_garble_flips_bits_of_reads(chip, driver):
    chip.garble(1)
    assert driver.Read_MFRC522(driver.VersionReg) != 0x92
    assert driver.Read_MFRC522(driver.VersionReg) == 0x92
    assert chip.garbled_transfers == 1


def test_remove_after_transfers(chip, driver):
    card = MifareClassic1K(UID4)
    chip.present(card)
    chip.remove_after(3)
    driver.Read_MFRC522(driver.VersionReg)
    driver.Read_MFRC522(driver.VersionReg)
    assert card in chip.cards
    driver.Read_MFRC522(driver.VersionReg)
    assert card not in chip.cards and not card.powered


def test_transfer_counter_and_closed_device(chip):
    spi = EmulatedSpiDev(chip)
    spi.xfer2([0xEE, 0])
    spi.xfer([0xEE, 0])
    assert chip.spi_transfers == 2
    chip.reset_transfer_count()
    assert chip.spi_transfers == 0
    spi.close()
    with pytest.raises(OSError):
        spi.xfer2([0xEE, 0])
