"""ocpp_calls and the one cs_<group> module a call needs are imported for each of the central
system's CALLs and dropped again (chargepoint.handle_call): under the unix-port MicroPython, a
call is answered by its handler, a bad payload still raises FrameError, no call leaves a module
held, and a call imports its own group only (all the handlers together took 9 KB on 64 bit)."""
from support.dual import BOARD_UNIX, mp_run


def test_calls__answered_then_module_dropped_also_after_an_error():
    out = mp_run(r"""
import gc, sys
import chargepoint, ocppj

class CP:
    req_reset = None

cp = CP()
held = lambda: sorted(m for m in sys.modules if m == "ocpp_calls" or m.startswith("cs_"))
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
print("held", gc.mem_alloc() - a < 1024, held())
# a group's handler that imports more (cs_auth: authstore): its DROP goes with it
cp.keys = {"LocalAuthListEnabled": True}
print("lv", chargepoint.handle_call(cp, "GetLocalListVersion", {}, "m5"), "authstore" in sys.modules)
# what a call imports while it runs: its own group, nothing else
import ocpp_calls
seen = {}
for action in sorted(ocpp_calls.WHERE):
    before = set(sys.modules)
    ocpp_calls.row(action)
    seen[action] = sorted(m for m in sys.modules if m not in before)
    sys.modules.pop(ocpp_calls.WHERE[action])
print("groups", all(seen[a] == [ocpp_calls.WHERE[a]] for a in seen), len(set(ocpp_calls.WHERE.values())))
""", path=(BOARD_UNIX,))
    lines = [ln for ln in out.split("\n") if not ln.startswith("[")]   # not the log lines
    assert lines[0] == "before False", out
    assert lines[1] == "reset {'status': 'Accepted'} Soft False", out
    assert lines[2].startswith("bad ") and lines[2].endswith(" False"), out
    assert lines[3] == "unknown None False", out
    assert lines[4] == "held True []", out
    assert lines[5] == "lv {'listVersion': 0} False", out
    assert lines[6] == "groups True 7", out
