# Clock-aligned data (ClockAlignedDataInterval): every so many seconds after midnight UTC, a
# MeterValues (Sample.Clock, MeterValuesAlignedData, stamped with the aligned time), also when
# idle. In a transaction it is a transaction message (journalled, with its id); outside one it
# is sent only if the link is up (dropped if not, never journalled). With each one taken while
# online goes the DataTransfer PicoCharge/Climate (humidity and the RP2040's temperature: OCPP
# 1.6 has no measurand for either).
import log
import ocppj
from compat import ticks_ms, ticks_diff, ticks_add
from journal import K_METER
from ocpp_link import CallError

L = log.get("ocpp")

VENDOR = "PicoCharge"
_NO_DT = ("UnknownVendorId", "UnknownMessageId", "NotImplemented")  # DataTransfer answers: stop sending it


class Aligned:
    def __init__(self, cp):
        self.cp = cp
        self.due = None      # next clock-aligned sample (station clock, epoch ms)
        self.tick = 0        # ... and when it is due in ticks_ms (cheap to check)
        self.iv = 0
        self.values = None   # clock-aligned MeterValues (no transaction) for the link
        self.climate = None  # DataTransfer Climate data to send after the clock-aligned sample
        self.dt_ok = True    # the central system takes our Climate DataTransfer (this connection)

    def clock_set(self, now):
        """The station's clock was corrected (it is now `now`): the next slot by it."""
        if self.due is not None:
            d = self.due - now
            if -self.iv * 1000 < d <= self.iv * 1000:
                self.tick = ticks_add(ticks_ms(), d)
            else:
                self.due = None  # jumped by more than an interval: find the slot again

    def take(self):
        """Called every tick: take the sample when its slot has come."""
        cp = self.cp
        iv = cp.keys["ClockAlignedDataInterval"]
        if iv <= 0:
            self.due = None
            return
        if self.due is not None and iv == self.iv and ticks_diff(ticks_ms(), self.tick) < 0:
            return  # (5 times a second: no clock arithmetic, which allocates on a Pico W)
        now = cp.now()
        due = self.due
        if due is None or iv != self.iv or now - due >= iv * 1000:
            # first time, a new interval, or a slot missed by a whole interval: the next slot
            due = None
        elif now < due:  # the ticks ran a little ahead of the clock
            self.tick = ticks_add(ticks_ms(), due - now)
            return
        self.iv = iv
        self.due = ocppj.next_aligned(now, iv)
        self.tick = ticks_add(ticks_ms(), self.due - now)
        if due is None:
            return
        st = cp.st
        mv = ocppj.meter_value(ocppj.iso_ms(due), st.reading(),
                               cp.keys.measurands("MeterValuesAlignedData"), "Sample.Clock")
        tx = cp.conn.tx
        if tx:
            cp.journal.add(K_METER, cp.ids.next(), "MeterValues", ocppj.meter_values(1, None, [mv]), tx["ref"])
        elif cp.online():
            self.values = ocppj.meter_values(1, None, [mv])
        else:
            L.debug("offline: clock-aligned sample dropped")
        if cp.online() and self.dt_ok:
            self.climate = ocppj.climate_of(st.values)

    async def send(self):
        p = self.values
        self.values = None
        if p:
            p = self.cp.link.call("MeterValues", p)   # framed: the payload is not held over the wait
            await p
        c = self.climate
        self.climate = None
        if c is None:
            return
        # OCPP 1.6 has no humidity measurand, and no location for the RP2040's own temperature
        # (Body is the enclosure's): both go in a DataTransfer
        try:
            res = await self.cp.link.call("DataTransfer", {"vendorId": VENDOR, "messageId": "Climate", "data": c})
            dt = res.get("status")
        except CallError as e:
            dt = e.code
        if dt != "Accepted":
            L.info("DataTransfer Climate: %s", dt)
            if dt in _NO_DT:
                self.dt_ok = False  # not for this central system: stop asking (this connection)
