"""The real firmware on the unix board, as the tests run it: `Station` is the firmware-process
helper `picocharge sim` runs its stations with (picocharge.fwproc), plus the configs and
checks the firmware suites share."""
import json
import urllib.request
from pathlib import Path

from picocharge.fwproc import CONFIG_EXIT, RESET_EXIT, FirmwareProcess  # noqa: F401  (re-exported)

ROOT = Path(__file__).resolve().parents[2]
TLS = Path(__file__).resolve().parent / "tls"   # a self-signed cert.pem / key.pem for 127.0.0.1


class Station(FirmwareProcess):
    """The real firmware/main.py on the unix board, on its own flash folder.

    `expect(needle)` waits (blocking) for a console line, `await aexpect(needle)` in asyncio
    tests; `output()`, `tail()`, `wait()`, `kill()` (power cut), `stop()`. Made by the
    `station` fixture (support.fixtures), which stops it at the end of the test."""


def base_config(**sections):
    """A station config without OCPP: CP-7 on Wi-Fi 'shed', status page off, a sample a second."""
    cfg = {"station_id": "CP-7", "wifi": {"ssid": "shed", "password": "wifi-secret-1"},
           "web": {"enabled": False}, "sensors": {"interval_s": 1}}
    for k, v in sections.items():
        cfg[k] = v
    return cfg


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())
