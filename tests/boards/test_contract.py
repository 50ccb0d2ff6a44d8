"""Every board module keeps boards/contract.py: the names and signatures the firmware calls,
and what they do. The Pico W module runs here under CPython against fake machine, network,
dht and rp2 modules put in sys.modules for the test only (never a machine.py on a path a
board would see); the unix board runs under the unix-port micropython."""
import importlib.util
import inspect
import json
import sys
import types
from array import array
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "boards"


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


contract = _load(BOARDS / "contract.py", "picocharge_board_contract")
MEMBERS = contract.members()


# --- fakes of the rp2 port's modules, as much of them as the board uses -----------------------
class FakePin:
    OUT, IN, PULL_UP = 1, 0, 1

    def __init__(self, id, mode=None, pull=None, value=None):
        self.id, self.mode, self.pull = id, mode, pull
        # an input with its pull-up and nothing pulling it down reads 1
        self.v = value if value is not None else (1 if pull == self.PULL_UP else 0)
        self.log = []

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        self.log.append(v)

    def toggle(self):
        self.v ^= 1


class FakeADC:
    CORE_TEMP = 4
    readings = {}

    def __init__(self, ch):
        self.ch = ch
        self.n = 0

    def read_u16(self):
        self.n += 1
        return FakeADC.readings.get(self.ch, 1000 + self.ch)


class FakePWM:
    def __init__(self, pin, freq=0, duty_u16=0):
        self.pin, self.freq, self.duty = pin, freq, duty_u16

    def duty_u16(self, d=None):
        if d is None:
            return self.duty
        self.duty = d


class FakeWDT:
    made = []

    def __init__(self, timeout):
        self.timeout = timeout
        self.feeds = 0
        FakeWDT.made.append(self)

    def feed(self):
        self.feeds += 1


class FakeSPI:
    """An MFRC522 on the bus, at register level (NXP datasheet 8.1.2: address byte, then data):
    its FIFO, ComIrqReg and a Transceive that a card answers (REQA: ATQA; anticollision: the UID
    and its BCC) or, with none in the field, the timer ends."""
    card = None          # the UID in the field (bytes), or None
    bad_bcc = False
    made = []

    def __init__(self, id, baudrate=0, polarity=0, phase=0, sck=None, mosi=None, miso=None):
        self.id, self.pins = id, (sck.id, mosi.id, miso.id)
        self.regs = [0] * 64
        self.fifo = []
        self.sent = []
        FakeSPI.made.append(self)

    def write_readinto(self, w, r):
        assert isinstance(w, bytearray) and isinstance(r, bytearray) and len(w) == len(r) == 2
        reg = (w[0] >> 1) & 0x3F
        if w[0] & 0x80:
            if reg == 0x09:
                r[1] = self.fifo.pop(0) if self.fifo else 0
            elif reg == 0x0A:
                r[1] = len(self.fifo)
            else:
                r[1] = self.regs[reg]
            return
        v = w[1]
        if reg == 0x09:
            self.fifo.append(v)
        elif reg == 0x0A:
            if v & 0x80:
                self.fifo = []
        elif reg == 0x04:
            self.regs[4] &= ~v & 0x7F       # bit 7 clear: the bits set in v are cleared
        elif reg == 0x0D and v & 0x80 and self.regs[1] == 0x0C:
            self._transceive(v & 0x07)
        else:
            self.regs[reg] = v

    def _transceive(self, bits):
        out = self.fifo
        self.sent.append((bytes(out), bits))
        self.fifo = []
        uid = FakeSPI.card
        if uid is None:
            self.regs[4] |= 0x01              # TimerIRq: nothing answered
        elif out == [0x26] and bits == 7:
            self.fifo = [0x04, 0x00]
            self.regs[4] |= 0x30
        elif out == [0x93, 0x20] and bits == 0:
            bcc = uid[0] ^ uid[1] ^ uid[2] ^ uid[3] ^ (1 if FakeSPI.bad_bcc else 0)
            self.fifo = list(uid) + [bcc]
            self.regs[4] |= 0x30
        else:
            self.regs[4] |= 0x01


class FakeWLAN:
    def __init__(self, iface):
        self.calls = []
        self.up = False

    def active(self, on=None):
        self.calls.append(("active", on))

    def config(self, **kw):
        self.calls.append(("config", kw))

    def connect(self, ssid, key):
        self.calls.append(("connect", ssid, key))

    def disconnect(self):
        self.calls.append(("disconnect",))

    def isconnected(self):
        return self.up

    def ifconfig(self):
        return ("192.168.4.7", "255.255.255.0", "192.168.4.1", "192.168.4.1")


class FakeDHT11:
    fail = None

    def __init__(self, pin):
        self.pin = pin

    def measure(self):
        if FakeDHT11.fail:
            raise FakeDHT11.fail

    def temperature(self):
        return 23

    def humidity(self):
        return 41


class Resets(Exception):
    pass


def _fake_modules(machine_name):
    mem = {}
    machine = types.SimpleNamespace(
        Pin=FakePin, ADC=FakeADC, WDT=FakeWDT, PWM=FakePWM, SPI=FakeSPI, mem32=mem,
        unique_id=lambda: bytes.fromhex("e6614103e7452d2f"),
        reset=lambda: (_ for _ in ()).throw(Resets("hard")),
        soft_reset=lambda: (_ for _ in ()).throw(Resets("soft")))
    rp2 = types.SimpleNamespace(countries=[])
    rp2.country = rp2.countries.append
    mods = {
        "machine": machine,
        "network": types.SimpleNamespace(WLAN=FakeWLAN, STA_IF=0),
        "dht": types.SimpleNamespace(DHT11=FakeDHT11),
        "rp2": rp2,
        "ubinascii": __import__("binascii"),
        "micropython": types.SimpleNamespace(const=lambda x: x),
    }
    # CPython's own, plus what MicroPython adds (importlib reads the rest while we load)
    impl = types.SimpleNamespace(**dict(vars(sys.implementation), _machine=machine_name))
    return mods, impl


class FakeTime:
    """time as the rp2 port has it (ticks_us, ticks_diff, sleep_ms), on a clock we move."""

    def __init__(self):
        self.us = 0

    def ticks_us(self):
        self.us += 4  # a read_u16 takes ~4 us
        return self.us

    def ticks_add(self, a, b):
        return a + b

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.us += ms * 1000


@pytest.fixture(params=[("pico_w", "Raspberry Pi Pico W with RP2040"),
                        ("pico2_w", "Raspberry Pi Pico 2 W with RP2350")], ids=["pico_w", "pico2_w"])
def rp2_board(request, monkeypatch):
    """The board module as a board would import it, with the fakes; (module, fakes)."""
    board, machine_name = request.param
    mods, impl = _fake_modules(machine_name)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(sys, "implementation", impl)
    FakeWDT.made.clear()
    FakeDHT11.fail = None
    FakeADC.readings = {}
    # boards/pico2_w/board.py imports the Pico W module as deploy ships it: /pico_w.mpy
    pico_w = _load(BOARDS / "pico_w" / "board.py", "pico_w")
    monkeypatch.setitem(sys.modules, "pico_w", pico_w)
    mod = pico_w if board == "pico_w" else _load(BOARDS / board / "board.py", "board_" + board)
    monkeypatch.setattr(pico_w, "time", FakeTime())
    return board, mod, mods


def _params(fn):
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


def _check_signatures(cls):
    for name, kind in MEMBERS.items():
        assert hasattr(cls, name), "%s lacks contract member %r" % (cls, name)
        if kind == "method":
            want = _params(getattr(contract.BoardContract, name))
            got = _params(getattr(cls, name))
            assert got == want, (name, got, want)


def test_contract__lists_what_the_firmware_calls():
    """Every contract method is called somewhere in firmware/ (else it is dead code), and the
    firmware calls no board method outside the contract."""
    import re

    src = "\n".join(p.read_text() for p in (ROOT / "firmware").glob("*.py"))
    called = set(re.findall(r"\b(?:_?board|b)\.([a-z_]+)\b", src))
    assert called <= set(MEMBERS), sorted(called - set(MEMBERS))
    assert set(MEMBERS) - {"name"} <= called, sorted(set(MEMBERS) - called)
    assert len(MEMBERS) >= 15, MEMBERS


def test_contract__unix_board_has_every_member_with_its_signature():
    # the unix board imports under CPython too (MicroPython's time.ticks_ms is called only
    # when a Board is made); the Pico W modules are checked with their fakes below
    mod = _load(BOARDS / "unix" / "board.py", "board_unix_sig")
    _check_signatures(mod.Board)
    assert mod.NAME == mod.Board.name == "unix"


def test_contract__rp2_boards_have_every_member_with_its_signature(rp2_board):
    name, mod, _ = rp2_board
    _check_signatures(mod.Board)
    b = mod.Board()
    assert b.name == name and mod.NAME == name


def test_contract__rp2_rfid_reads_a_card_uid_over_spi1(rp2_board):
    _, mod, _ = rp2_board
    FakeSPI.made.clear()
    FakeSPI.card = None
    FakeSPI.bad_bcc = False
    b = mod.Board()
    assert FakeSPI.made == []                          # set up at the first poll only (charger.rfid)
    assert b.rfid_uid() is None                        # no card: REQA, the timer ends it
    spi = FakeSPI.made[0]
    assert spi.id == 1 and spi.pins == (10, 11, 12), (spi.id, spi.pins)
    assert b._rfid._cs.id == 13 and b._rfid._cs.v == 1   # chip select idle high
    assert spi.regs[0x14] & 0x03 == 0x03               # antenna on
    assert spi.sent == [(b"\x26", 7)], spi.sent
    FakeSPI.card = bytes.fromhex("04a1b2c3")
    assert b.rfid_uid() == bytes.fromhex("04a1b2c3")
    assert spi.sent[1:] == [(b"\x26", 7), (b"\x93\x20", 0)], spi.sent
    FakeSPI.bad_bcc = True                             # a garbled answer is no card
    assert b.rfid_uid() is None
    assert len(FakeSPI.made) == 1


def test_contract__rp2_relay_led_button_drive_their_pins(rp2_board):
    _, mod, _ = rp2_board
    b = mod.Board()
    assert b._relay.id == 16 and b._relay.v == 0     # GP16, open at power-up
    b.relay(True)
    b.relay(False)
    b.relay(1)
    assert b._relay.log == [1, 0, 1], b._relay.log
    b.led(True)
    assert b._led.id == "LED" and b._led.v == 1
    b.led(False)
    assert b._led.v == 0
    assert b._button.id == 14 and b._button.pull == FakePin.PULL_UP
    assert b.button() is False                        # pulled up: not pressed
    b._button.v = 0
    assert b.button() is True


def test_contract__rp2_adc_burst_interleaves_raw_samples_and_chip_temp_is_core_temp(rp2_board):
    _, mod, _ = rp2_board
    FakeADC.readings = {0: 31000, 1: 33000, 4: 14000}
    b = mod.Board()
    bi, bv = array("H", bytes(2 * 160)), array("H", bytes(2 * 160))
    clock = sys.modules["pico_w"].time
    t0 = clock.us
    b.adc_burst(bi, bv, 2000)
    assert list(bi) == [31000] * 160 and list(bv) == [33000] * 160
    assert b._adc_i.ch == 0 and b._adc_v.ch == 1 and b._adc_i.n == 160
    # paced: 160 pairs at 2 kHz take 80 ms
    assert 80000 <= clock.us - t0 <= 81000, clock.us - t0
    assert b._adc_t.ch == FakeADC.CORE_TEMP
    assert b.read_chip_temp() == 14000


def test_contract__rp2_dht_reads_floats_and_raises_oserror_only(rp2_board):
    _, mod, _ = rp2_board
    b = mod.Board()
    assert b._dht.pin.id == 15
    assert b.read_dht() == (23.0, 41.0)
    assert all(type(x) is float for x in b.read_dht())
    FakeDHT11.fail = OSError(110, "ETIMEDOUT")
    with pytest.raises(OSError) as e:
        b.read_dht()
    assert e.value.args[0] == 110
    FakeDHT11.fail = Exception("checksum error")     # what the dht driver raises
    with pytest.raises(OSError) as e:
        b.read_dht()
    assert e.value.args[0] == 5


def test_contract__rp2_watchdog_feed_calls_wdt_feed_and_stop_clears_enable(rp2_board):
    name, mod, mods = rp2_board
    b = mod.Board()
    b.wdt_feed()                                      # before wdt_start: nothing to feed
    assert FakeWDT.made == []
    b.wdt_start(20000)
    (wdt,) = FakeWDT.made
    assert wdt.timeout == 8388                        # the RP2040's longest
    b.wdt_feed()
    b.wdt_feed()
    assert wdt.feeds == 2
    b.wdt_stop()
    # CTRL.ENABLE (bit 30) through the atomic clear alias of the chip's WATCHDOG block
    clr = {"pico_w": 0x40058000, "pico2_w": 0x400D8000}[name] + 0x3000
    assert mods["machine"].mem32 == {clr: 0x40000000}, mods["machine"].mem32
    b.wdt_feed()
    assert wdt.feeds == 2


def test_contract__rp2_wifi_connect_status_ip_disconnect(rp2_board):
    _, mod, mods = rp2_board
    b = mod.Board()
    b.wifi_connect("ssid", "pw", "DE")
    assert mods["rp2"].countries == ["DE"]
    assert b._wlan.calls == [("active", True), ("config", {"pm": 0xA11140}), ("connect", "ssid", "pw")]
    assert b.wifi_connected() is False and b.ip() == ""
    b._wlan.up = True
    assert b.wifi_connected() is True and b.ip() == "192.168.4.7"
    b.wifi_disconnect()
    assert b._wlan.calls[-2:] == [("disconnect",), ("active", False)]


def test_contract__rp2_identity_reset_and_clock(rp2_board, monkeypatch):
    _, mod, _ = rp2_board
    b = mod.Board()
    assert b.unique_id() == "e6614103e7452d2f"
    with pytest.raises(Resets, match="soft"):
        b.reset()
    with pytest.raises(Resets, match="hard"):
        b.reset(hard=True)
    # no ntptime module answering: False, never an exception
    monkeypatch.setitem(sys.modules, "ntptime", None)
    assert b.sync_clock("pool.ntp.org") is False
    set_to = []
    monkeypatch.setitem(sys.modules, "ntptime", types.SimpleNamespace(
        host=None, settime=lambda: set_to.append(sys.modules["ntptime"].host)))
    assert b.sync_clock("ntp.example") is True and set_to == ["ntp.example"]


def test_contract__unix_board_does_what_the_contract_says():
    """The unix board under the unix-port micropython: every contract method called, its
    result of the documented type."""
    from support.dual import BOARD_UNIX, mp_run

    code = r"""
import sys, json, array
import board
b = board.Board(board._merge(board.DEFAULTS, {'unique_id': 'ab12', 'wifi': {'connect_s': 0}}))
out = {'name': b.name, 'NAME': board.NAME, 'uid': b.unique_id()}
t, h = b.read_dht()
out['dht'] = [type(t).__name__, type(h).__name__]
bi = array.array('H', bytes(2 * 40)); bv = array.array('H', bytes(2 * 40))
b.relay(True)
b.adc_burst(bi, bv, 2000)
out['adc'] = [min(bi) >= 0, max(bi) <= 65535, max(bi) - min(bi) > 1000]
out['chip'] = type(b.read_chip_temp()).__name__
out['button'] = b.button()
b.led(True)
out['before'] = [b.wifi_connected(), b.ip()]
b.wifi_connect('ssid', 'pw', 'DE')
out['after'] = [b.wifi_connected(), b.ip()]
out['clock'] = b.sync_clock('pool.ntp.org')
b.wifi_disconnect()
out['down'] = b.wifi_connected()
b.wdt_start(8000); b.wdt_feed(); b.wdt_stop()
out['wdt_stopped'] = b.wdt_stopped
print(json.dumps(out))
try:
    b.reset(hard=True)
except SystemExit as e:
    print('exit', e.args[0])
"""
    out = mp_run(code, heap=None, path=[BOARD_UNIX])
    lines = out.strip().splitlines()
    got = json.loads([ln for ln in lines if ln.startswith("{")][0])
    assert got == {"name": "unix", "NAME": "unix", "uid": "ab12", "dht": ["float", "float"],
                   "adc": [True, True, True], "chip": "int", "button": False,
                   "before": [False, ""], "after": [True, "127.0.0.1"], "clock": True,
                   "down": False, "wdt_stopped": True}, out
    assert lines[-1] == "exit 75", out   # RESET_EXIT: the supervisor restarts it


def test_contract__deploy_ships_the_pico_w_module_with_pico2_w(monkeypatch):
    from picocharge import cmd_deploy, mplibs

    monkeypatch.setattr(mplibs, "lib_files", lambda: [])
    got = {dest: data for dest, data, _ in cmd_deploy.plan("pico2_w", compile=False)}
    assert got["/board.py"] == (BOARDS / "pico2_w" / "board.py").read_bytes()
    assert got["/pico_w.py"] == (BOARDS / "pico_w" / "board.py").read_bytes()
    assert "/pico_w.py" not in {d for d, _, _ in cmd_deploy.plan("pico_w", compile=False)}
