# Checks of the reservation (firmware/cs_reserve.py with connector.Connector), written once and
# run under both interpreters like auth_checks.py, in the current directory (the test's
# tmp_path): every ReserveNow answer of OCPP 1.6 5.13 from the connector's state (Faulted,
# Unavailable, Occupied for each busy status and another reservation, Rejected for connector
# 0 / 2 and a past expiryDate, Accepted and a replacement under the same id), Reserved and back
# to Available, CancelReservation, the record on flash and what a boot reads back (kept,
# expired, unreadable). MicroPython-compatible code only.
try:
    from support import checkrun   # CPython: tests/ is on sys.path
except ImportError:
    import checkrun                # micropython runs this file from tests/support

import json
import os

import cs_reserve as R
import ocppj
from connector import Connector
from state import State

NOW_MS = 1796000000000      # 2026-11-30T..Z: the checks' clock


class _CP:
    def __init__(self):
        self.st = State()
        self.conn = Connector(self.st)
        self.keys = {"ReserveConnectorZeroSupported": False}
        self.ms = NOW_MS

    def now(self):
        return self.ms


def _at(s):
    return ocppj.iso_ms(NOW_MS + s * 1000)


def _reserve(cp, rid, tag="04AAAA01", connector=1, s=3600, parent=None):
    p = {"connectorId": connector, "expiryDate": _at(s), "idTag": tag, "reservationId": rid}
    if parent:
        p["parentIdTag"] = parent
    return R.on_reserve_now(cp, p)["status"]


def _gone():
    return R.FILE not in os.listdir()


def check_reserve_now__every_answer_from_the_connector_state():
    cp = _CP()
    assert _reserve(cp, 1, connector=0) == "Rejected"      # ReserveConnectorZeroSupported false
    assert _reserve(cp, 1, connector=2) == "Rejected"
    assert _reserve(cp, 1, s=-1) == "Rejected"              # expiryDate passed
    assert _reserve(cp, 1, s=0) == "Rejected"
    cp.st.fault = "HighTemperature"
    assert _reserve(cp, 1) == "Faulted"
    cp.st.fault = None
    cp.st.available = False
    assert _reserve(cp, 1) == "Unavailable"
    cp.st.available = True
    cp.conn.preparing = True
    assert _reserve(cp, 1) == "Occupied"
    cp.conn.preparing = False
    cp.conn.finishing = True
    assert _reserve(cp, 1) == "Occupied"
    cp.conn.finishing = False
    cp.st.pilot = 1                                         # an EV plugged in: Preparing
    assert _reserve(cp, 1) == "Occupied"
    cp.st.pilot = None
    cp.conn.started({"ref": 1, "tag": "X"})
    assert _reserve(cp, 1) == "Occupied"
    cp.conn.tx = None
    assert _gone() and cp.conn.resv is None and cp.conn.status(1) == ("Available", "NoError")

    assert _reserve(cp, 7, parent="FLEET") == "Accepted"
    assert cp.conn.status(1) == ("Reserved", "NoError") and cp.conn.status(0) == ("Available", "NoError")
    assert cp.conn.resv == [7, "04AAAA01", "FLEET", NOW_MS // 1000 + 3600], cp.conn.resv
    with open(R.FILE) as f:
        assert json.load(f) == cp.conn.resv
    assert _reserve(cp, 8, "04BBBB02") == "Occupied"        # reserved by another id
    assert _reserve(cp, 7, "04BBBB02", s=60) == "Accepted"  # the same id: replaced
    assert cp.conn.resv == [7, "04BBBB02", None, NOW_MS // 1000 + 60], cp.conn.resv
    cp.st.pilot = 1                                         # an EV plugged in: still Reserved
    assert cp.conn.status(1) == ("Reserved", "NoError")
    cp.st.fault = "HighTemperature"                         # a fault shows over it
    assert cp.conn.status(1) == ("Faulted", "HighTemperature")
    cp.st.fault = None
    assert R.on_cancel_reservation(cp, {"reservationId": 8}) == {"status": "Rejected"}
    assert R.on_cancel_reservation(cp, {"reservationId": 7}) == {"status": "Accepted"}
    assert cp.conn.resv is None and _gone() and cp.conn.status(1) == ("Preparing", "NoError")
    assert R.on_cancel_reservation(cp, {"reservationId": 7}) == {"status": "Rejected"}
    try:
        R.on_reserve_now(cp, {"connectorId": 1, "expiryDate": "tomorrow", "idTag": "T", "reservationId": 9})
        assert False, "an unreadable expiryDate is a CALLERROR"
    except ocppj.FrameError as e:
        assert e.code == ocppj.PROPERTY_CONSTRAINT and "expiryDate" in str(e), e


def check_load__kept_expired_or_unreadable_at_boot():
    cp = _CP()
    R.load(cp)                                              # no file: nothing, no error
    assert cp.conn.resv is None
    assert _reserve(cp, 3, "04CCCC03", s=100) == "Accepted"
    boot = _CP()
    R.load(boot)                                            # a reboot, the same flash
    assert boot.conn.resv == [3, "04CCCC03", None, NOW_MS // 1000 + 100], boot.conn.resv
    assert boot.conn.status(1) == ("Reserved", "NoError")
    R.end(boot, "used")
    assert boot.conn.resv is None and _gone()

    assert _reserve(_CP(), 4, s=100) == "Accepted"
    late = _CP()
    late.ms = NOW_MS + 100 * 1000                           # off until its expiry
    R.load(late)
    assert late.conn.resv is None and _gone()
    for bad in ("[4, \"T\"", "{\"id\": 4}", "[\"4\", \"T\", null, 1]", "[4, \"T\", 5, 99999999999]"):
        with open(R.FILE, "w") as f:
            f.write(bad)
        b = _CP()
        R.load(b)
        assert b.conn.resv is None and _gone(), bad


CHECKS = checkrun.checks(globals())

if __name__ == "__main__":
    checkrun.main(CHECKS, scratch=True)
