"""Helpers every test folder shares. pyproject.toml's pytest `pythonpath` puts tests/ on
sys.path: `from support.net import free_port`. Inside the package, imports are relative, so it
also works as `tests.support` (`python -m tests.support.central` from the repository root).

Modules: net (ports, wait_until), broker (MQTT brokers and subscribers), fake_thingspeak,
tls_certs, firmware (Station: the firmware process, base_config), dual (CPython+MicroPython
runner, mp_run), pure_checks, central (ocpp-package central system), rawws (raw WebSocket
server), gwhttp, stations (ocpp-package charge points), tsreadings, cli, sim, fixtures (the
shared fixtures, imported by tests/conftest.py), otaboard (release bundles in docs/ota.md's format and
OtaBoard, a charge point that updates itself over the air as the contract says).

Old name -> new name (for tests written against the old locations):

| old                                              | new                                          |
|--------------------------------------------------|----------------------------------------------|
| `from helpers import free_port, wait_port`       | `from support.net import free_port, wait_port` |
| `from helpers import Broker`                     | `from support.broker import Broker`          |
| `from fake_thingspeak import FakeThingSpeak`     | `from support.fake_thingspeak import FakeThingSpeak` |
| `import tls_certs`                               | `from support import tls_certs`              |
| `from fw_harness import mp_run`                  | `from support.dual import mp_run`            |
| `mp_run("import sys\\nsys.path.append(%r)\\n" % d + code)` | `mp_run(code, path=[d])` (`support.dual.BOARD_UNIX` for boards/unix) |
| `from fw_harness import ROOT`                    | `from support.firmware import ROOT`          |
| `fw_harness.Station`, `csys.Station`             | `support.firmware.Station` (= picocharge.fwproc.FirmwareProcess) |
| `await st.expect(needle)` (tests/firmware_ocpp)  | `await st.aexpect(needle)` (`st.expect` blocks: sync tests) |
| `ROOT / "tests/firmware_ocpp/tls"`               | `from support.firmware import TLS`           |
| `from test_station_e2e import base_config, get_json` | `from support.firmware import base_config, get_json` |
| `from test_station_e2e import Sub`               | `from support.broker import Sub`             |
| `from csys import CentralSystem, station_config, ...` | `from support.central import ...`       |
| csys.Station's default scenario                  | `support.central.OCPP_SCENARIO` (the `station_scenario` fixture in tests/firmware_ocpp) |
| `python tests/firmware_ocpp/csys.py --port N`    | `python -m tests.support.central --port N`   |
| `from rawws import RawServer, frame, random_mask` | `from support.rawws import ...`             |
| `import pure_checks` + its micropython subprocess | `from support import pure_checks`; `support.dual.check_names` / `run_checks` |
| `from gwhttp import TEST_TOKEN, basic, http`     | `from support.gwhttp import ...`             |
| `from stations import Connected, boot, meter` / `import stations` | `from support.stations import ...` / `from support import stations` |
| `from mqttsub import PersistentBroker, Subscriber` | `from support.broker import ...`            |
| `from tsreadings import _send, _until, ...`      | `from support.tsreadings import ...`         |
| `from cli_support import run_cli, ...`           | `from support.cli import ...`                |
| `from sim_support import procs_of, ...`          | `from support.sim import ...`                |
| fixtures `station` (tests/firmware, tests/firmware_ocpp), `central`, `mqtt_broker`, `micropython`, `mplib_dir` | the same names, from support.fixtures (via tests/conftest.py) |
| a conftest or test adding folders to `sys.path`   | nothing: pyproject's `pythonpath` (tests/, firmware/) |
"""
