"""Telecentre appliance: door, line monitor, Wi-Fi gateway and admin panel."""

__version__ = "0.1.0"
