# The control pilot task (charger.pilot): reads the EV's state from the pilot (pilot.py) and
# drives the pilot's PWM with the charging limit (Smart Charging's, chargepoint.limit_a, else
# charger.max_current_a). It gates the relay through state.pilot_ok: closed only while an
# authorized transaction runs (on a station without OCPP: while it charges freely), the EV is
# in state C (or D) and the limit is 6 A or more; opened within one or two readings (every 20 ms; the mains burst of the sample task, 80 ms, may come in
# between) of leaving that. An EV unplugged during a transaction stops it (EVDisconnected); a
# pilot at 0 V or a missing diode is Faulted / EVCommunicationError (connector.py).
# The loop allocates nothing: one buffer and one list made here, integers after that.
import asyncio
from array import array

import log
import pilot
from compat import const

_L = log.get("pilot")
_N = const(40)           # samples a reading: 2 ms, two PWM periods
_PERIOD_S = 0.02
# the front end of docs/wiring.md: ADC = 1.65 V + V_pilot / 8 over 0..3.3 V
_ZERO = const(32768)
_NUM = const(26400)      # 3300 mV * 8
_DEN = const(65535)


async def run(ctx):
    b = ctx.board
    st = ctx.state
    mx = ctx.cfg["charger"]["max_current_a"]
    buf = array("H", bytes(2 * _N))
    out = [0, None]
    p = pilot.Pilot(2)
    duty = -1
    st.pilot = pilot.A
    st.pilot_ok = False     # nothing closes the relay before the pilot has been read
    st.apply_relay(b)
    while True:
        b.pilot_burst(buf)
        pilot.levels(buf, _N, _ZERO, _NUM, _DEN, out)
        s = p.feed(out[0], out[1])
        cp = ctx.cp
        lim = cp.limit_a if cp is not None else mx
        tx = cp is not None and cp.conn.tx is not None
        # what authorizes charging: a transaction, or on a station without OCPP (free charge:
        # ThingSpeak or MQTT alone) the sample task's wish for power
        want = tx if cp is not None else st.charge_wanted
        if s != st.pilot:
            _L.info("EV state %s (pilot %d mV)", pilot.NAMES[s], out[0])
            if tx and s == pilot.A and cp.req_stop is None:
                cp.req_stop = "EVDisconnected"
            st.pilot = s
        # it closes only on a reading with the PWM on whose low level shows the diode (out[1]),
        # not on the debounced state alone: the first reading without the diode keeps it open;
        # once closed, the debounced state (which latches a missing diode) decides
        low = out[1]
        ok = (want and (s == pilot.C or s == pilot.D) and lim >= pilot.MIN_A
              and (st.pilot_ok or (low is not None and low <= pilot.LOW_MV)))
        if ok != st.pilot_ok:
            st.pilot_ok = ok
            st.apply_relay(b)
        if st.fault is not None or not st.available:
            d = pilot.OFF                       # state F: the station is not available
        elif want and pilot.A < s < pilot.E or tx and s == pilot.A:
            d = pilot.duty_u16(int(lim * 10))   # the limit; below 6 A: 100 %, paused
        else:
            d = pilot.FULL                      # nothing to charge, no EV, or a fault: no PWM
        if d != duty:
            b.pilot_pwm(d)
            duty = d
        await asyncio.sleep(_PERIOD_S)
