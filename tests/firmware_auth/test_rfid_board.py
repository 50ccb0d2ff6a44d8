"""The unix board's simulated RFID reader under the unix-port micropython: taps from the
scenario's "rfid" list and from a timeline event, each card on the reader for 0.6 s, and a poll
with no card that allocates nothing (the reader task polls every 200 ms all day long)."""
import json

from support.dual import BOARD_UNIX, mp_run


def test_rfid_board__taps_from_the_scenario_and_timeline_no_allocation_without_a_card(tmp_path):
    sc = tmp_path / "sc.json"
    sc.write_text(json.dumps({"rfid": [[0.3, "04A1B2C3"], [1.5, "0A0B0C0D"]],
                              "timeline": [[2.5, "rfid_tap", "04112233445566"]]}))
    out = mp_run(r"""
import gc, time, board
b = board.Board(board.load_scenario(%r))
seen = []
last = None
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 3500:
    b.now_s()                      # the other simulated hardware moves the timeline on
    u = b.rfid_uid()
    if u != last:
        seen.append((u.hex() if u else None, time.ticks_diff(time.ticks_ms(), t0) // 100))
        last = u
    time.sleep_ms(20)
print("seen", seen)
def polls(n, f):
    gc.collect()
    a = gc.mem_alloc()
    i = 0
    while i < n:
        f()
        i += 1
    return gc.mem_alloc() - a
print("alloc", polls(200, b.rfid_uid), polls(200, lambda: None))
""" % str(sc), path=(BOARD_UNIX,))
    seen = eval(out.split("seen ", 1)[1].split("\n", 1)[0])
    cards = [(u, t) for u, t in seen if u]
    assert [u for u, _ in cards] == ["04a1b2c3", "0a0b0c0d", "04112233445566"], seen
    assert [None] * 3 == [u for u, _ in seen if u is None], seen    # each card leaves again
    assert 2 <= cards[0][1] <= 4 and 14 <= cards[1][1] <= 17 and 24 <= cards[2][1] <= 27, seen
    alloc = out.split("alloc ", 1)[1].split()
    assert alloc[0] == alloc[1], out     # 200 polls allocate what 200 calls of nothing do
