# Firmware version, reported in BootNotification and /api/status.
VERSION = "0.1.0"
