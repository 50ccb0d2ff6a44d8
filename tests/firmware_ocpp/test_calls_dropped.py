"""ocpp_calls is imported for each of the central system's CALLs and dropped again
(chargepoint.handle_call): under the unix-port MicroPython, a call is answered by its handler,
a bad payload still raises FrameError, and no call leaves the module (~7 KB on 64 bit) held."""
from support.dual import BOARD_UNIX, mp_run


def test_calls__answered_then_module_dropped_also_after_an_error():
    out = mp_run(r"""
import gc, sys
import chargepoint, ocppj

class CP:
    req_reset = None

cp = CP()
print("before", "ocpp_calls" in sys.modules)
gc.collect()
a = gc.mem_alloc()
print("reset", chargepoint.handle_call(cp, "Reset", {"type": "Soft"}, "m1"), cp.req_reset,
      "ocpp_calls" in sys.modules)
try:
    chargepoint.handle_call(cp, "Reset", {"type": "Sideways"}, "m2")
except ocppj.FrameError as e:
    print("bad", e.code, "ocpp_calls" in sys.modules)
print("unknown", chargepoint.handle_call(cp, "NoSuchAction", {}, "m3"), "ocpp_calls" in sys.modules)
gc.collect()
print("held", gc.mem_alloc() - a < 1024)
""", path=(BOARD_UNIX,))
    lines = [ln for ln in out.split("\n") if not ln.startswith("[")]   # not the log lines
    assert lines[0] == "before False", out
    assert lines[1] == "reset {'status': 'Accepted'} Soft False", out
    assert lines[2].startswith("bad ") and lines[2].endswith(" False"), out
    assert lines[3] == "unknown None False", out
    assert lines[4] == "held True", out
