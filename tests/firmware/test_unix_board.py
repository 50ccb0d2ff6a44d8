"""The simulated unix board behaves like the hardware it stands for."""
import json

from support.dual import BOARD_UNIX, mp_run


def board_run(code):
    return json.loads(mp_run(code, path=[BOARD_UNIX]).strip().splitlines()[-1])


def test_unix_board__dht11_enforces_1hz_and_fails_like_a_dht11():
    got = board_run(r"""
import json, time, board
b = board.Board({'seed': 5, 'unique_id': 'ab', 'dht': {'temp_c': 30.0, 'humidity': 40.0, 'drift': 0.0, 'error_rate': 0.5},
                 'mains': board.DEFAULTS['mains'], 'wifi': board.DEFAULTS['wifi'], 'button': [], 'timeline': [], 'chip_temp_c': 30.0})
out = {'fast': None, 'errs': {}, 'ok': []}
try:
    b.read_dht(); b.read_dht()
except OSError as e:
    out['fast'] = e.args[0]
for i in range(12):
    b._last_dht = None   # pretend 1 s went by
    try:
        out['ok'].append(b.read_dht())
    except OSError as e:
        out['errs'][str(e.args[0])] = out['errs'].get(str(e.args[0]), 0) + 1
print(json.dumps(out))
""")
    assert got["fast"] == 110, got                       # ETIMEDOUT when read faster than 1 Hz
    assert set(got["errs"]) == {"110", "5"}, got         # timeouts and checksum errors
    assert all(t == [30.0, 40.0] for t in got["ok"]), got  # whole degrees, like a DHT11


def test_unix_board__waveforms_follow_relay_scenario_and_timeline():
    got = board_run(r"""
import json, array, board, mains
sc = board._merge(board.DEFAULTS, {'mains': {'hz': 60, 'vrms': 120.0, 'irms': 24.0, 'noise': 0.0, 'offset': 31000},
                                   'timeline': [[0, 'mains.irms', 8.0]]})
b = board.Board(sc)
n, rate = mains.burst_geometry(60, 4, 40)
bi = array.array('H', bytearray(2 * n)); bv = array.array('H', bytearray(2 * n))
b.adc_burst(bi, bv, rate)
open_ = [round(x, 1) for x in mains.analyse(bi, bv, n, 0.0015, 0.015)]
b.relay(True)
b.adc_burst(bi, bv, rate)
closed = [round(x, 1) for x in mains.analyse(bi, bv, n, 0.0015, 0.015)]
print(json.dumps({'open': open_, 'closed': closed, 'mean': sum(bv) // n,
                  'chip': round(mains.chip_temp(b.read_chip_temp()))}))
""")
    assert got["open"][0] < 0.05 and abs(got["open"][1] - 120) < 0.5, got    # no current while the relay is open
    assert abs(got["closed"][0] - 8.0) < 0.05, got                          # the timeline set irms to 8 A
    assert abs(got["closed"][2] - 8 * 120 * 0.995) < 10, got                # current lags voltage by 0.1 rad
    assert abs(got["mean"] - 31000) < 50 and got["chip"] == 30, got         # the front end's DC bias


def test_unix_board__wifi_drops_and_comes_back():
    got = board_run(r"""
import json, board
sc = board._merge(board.DEFAULTS, {'wifi': {'drops': [[0, 0.3]], 'connect_s': 0.1}})
b = board.Board(sc)
seen = []
b.wifi_connect('ssid', 'pw')
import time
for i in range(8):
    seen.append(b.wifi_connected())
    time.sleep_ms(100)
print(json.dumps(seen))
""")
    assert got[0] is False and got[-1] is True and got.index(True) >= 3, got


_DRIFT = r"""
import json, board
def run(seed, drift, n=600):
    b = board.Board(board._merge(board.DEFAULTS, {'seed': seed, 'dht': {'temp_c': 30.0, 'humidity': 40.0,
                                                  'drift': drift, 'wander': 1.5}}))
    out = []
    for i in range(n):
        b._last_dht = None   # pretend 1 s went by
        out.append(b.read_dht())
    return out
a = run(4, 0.2)
print(json.dumps({'a': a, 'again': run(4, 0.2) == a, 'other': run(5, 0.2) == a, 'still': run(4, 0.0, 50)}))
"""


def test_unix_board__dht11_drifts_slowly_within_bounds_and_repeats_per_seed():
    got = json.loads(mp_run(_DRIFT, heap="1M", path=[BOARD_UNIX]).strip().splitlines()[-1])
    temps = [t for t, h in got["a"]]
    hums = [h for t, h in got["a"]]
    # it drifts: more than one whole-degree value over 10 minutes, never beyond the bound (+ rounding)
    assert len(set(temps)) >= 2 and len(set(hums)) >= 2, (sorted(set(temps)), sorted(set(hums)))
    assert all(28.0 <= t <= 32.0 for t in temps) and all(38.0 <= h <= 42.0 for h in hums), got["a"]
    # slowly: one reading to the next moves by at most one unit
    assert all(abs(x - y) <= 1.0 for x, y in zip(temps, temps[1:])), temps
    assert got["again"] is True and got["other"] is False, got  # seeded: same seed, same walk
    assert got["still"] == [[30.0, 40.0]] * 50, got["still"]    # drift 0: a steady enclosure
