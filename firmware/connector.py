# Connector 1's OCPP 1.6 status as a state machine: pure logic, no I/O and no clock, so it runs
# and is tested under MicroPython and CPython alike (tests/firmware_ocpp/pure_checks.py).
#
#   Available -> Preparing (authorizing) -> Charging <-> SuspendedEV / SuspendedEVSE
#             -> Finishing (transaction stopped, until the status is sent) -> Available
#   Faulted over everything while the station has a fault; Unavailable (ChangeAvailability)
#   when idle; Reserved while idle with a reservation (resv, cs_reserve.py). Connector 0 is
#   Available or Unavailable.
#
# What the station measures comes from `st` (state.State: available, fault, relay, the current
# in values, readings_seq); what the charge point decides is set here by the transitions below.
import fields

_CURRENT = fields.CURRENT
_CHARGING_A = 0.5  # below this a closed relay means the EV is not drawing: SuspendedEV


class Connector:
    def __init__(self, st):
        self.st = st
        self.tx = None             # {"ref", "tag", "ms", "b"} of the running transaction
        self.resv = None           # [reservationId, idTag, parentIdTag, expiry s] (cs_reserve)
        self.preparing = False
        self.finishing = False
        self.closed_seq = -1       # readings_seq when the relay was last closed
        self.last_relay = False

    def status(self, connector):
        """(status, errorCode) of connector 0 or 1."""
        st = self.st
        if connector == 0:
            return ("Available" if st.available else "Unavailable"), "NoError"
        if st.fault:
            return "Faulted", st.fault
        pl = st.pilot      # None without a pilot; 0..6: pilot.A, B, C, D, E, F, DIODE
        if pl is not None and pl >= 4:
            return "Faulted", "EVCommunicationError"
        if self.tx:
            if not st.relay:
                # the EV (state B: not asking) or the station (a limit below 6 A, a pause)
                return ("SuspendedEV" if pl == 1 else "SuspendedEVSE"), "NoError"
            if st.readings_seq > self.closed_seq + 1 and (st.values[_CURRENT] or 0) < _CHARGING_A:
                return "SuspendedEV", "NoError"
            return "Charging", "NoError"
        if self.preparing:
            return "Preparing", "NoError"
        if self.finishing:
            return "Finishing", "NoError"
        if not st.available:
            return "Unavailable", "NoError"
        if self.resv:     # an EV plugged in too: still Reserved, until its tag starts
            return "Reserved", "NoError"
        if pl is not None and pl > 0:     # an EV plugged in, no transaction yet
            return "Preparing", "NoError"
        return "Available", "NoError"

    def free(self):
        """A transaction may start: none running or being authorized, available, no fault."""
        st = self.st
        return not (self.tx or self.preparing or st.fault or not st.available)

    def started(self, tx):
        """The transaction runs (the relay is being closed): the EV gets a sample to draw."""
        self.tx = tx
        self.closed_seq = self.st.readings_seq

    def stopped(self):
        self.tx = None
        self.finishing = True

    def update(self, online):
        """Once a tick, after the local decisions: note a relay that (re)closed (after a fault,
        say) so the EV gets a sample before it counts as SuspendedEV; Finishing is only for the
        central system to see, so offline it ends at once. Returns connector 1's status."""
        st = self.st
        if self.finishing and not online:
            self.finishing = False
        if st.relay and not self.last_relay:
            self.closed_seq = st.readings_seq
        self.last_relay = st.relay
        return self.status(1)[0]

    def sent(self, connector, status):
        """The central system has been told `status`: Finishing has then been seen."""
        if connector == 1 and status == "Finishing":
            self.finishing = False
