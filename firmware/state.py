# Shared station state: one object every task reads and updates (no I/O here).
import fields
from compat import ticks_ms, ticks_diff

_ENERGY = fields.ENERGY
# every key State.reading() has (fromkeys: a dict of exactly that size)
_TEMPLATE = dict.fromkeys(fields.READING_KEYS + ("status", "fault"))


class State:
    def __init__(self):
        self.boot_ms = ticks_ms()
        # latest readings, one slot per row of fields.READINGS (None until the first good read):
        # st.values[fields.CURRENT] is the current in A
        self.values = [None] * len(fields.READINGS)
        self.values[_ENERGY] = 0.0
        self.readings_seq = 0      # bumped on every sample cycle
        self.dht_errors = 0
        # connector 1
        self.status = "Available"  # OCPP ChargePointStatus
        self.fault = None          # None or an OCPP ChargePointErrorCode, e.g. "HighTemperature"
        self.fault_info = None     # what the errorCode alone does not say, e.g. "DHT11 not answering"
        self.relay = False
        # True when something (a transaction, or free-charge mode) wants power delivered
        self.charge_wanted = False
        self.available = True      # ChangeAvailability
        # the control pilot (evse.py, charger.pilot): the EV's state (pilot.A..DIODE, None: no
        # pilot) and whether it lets the relay close (an authorized transaction in state C/D)
        self.pilot = None
        self.pilot_ok = True
        # LED phases left of a "refused" pattern (rfid.py blinks it; the sample task leaves
        # the LED alone meanwhile)
        self.blink = 0
        # links: "up" / "down" / "off" (not configured)
        self.ip = ""
        self.links = {"wifi": "down", "ocpp": "off", "mqtt": "off", "thingspeak": "off"}
        self.counters = {"ts_sent": 0, "ts_fail": 0, "mqtt_sent": 0, "mqtt_fail": 0}

    def uptime_s(self):
        return ticks_diff(ticks_ms(), self.boot_ms) // 1000

    def apply_relay(self, board):
        """Close the relay iff power is wanted, the connector is available and nothing is faulted."""
        on = self.charge_wanted and self.pilot_ok and self.available and self.fault is None
        if on != self.relay:
            board.relay(on)
            self.relay = on
        return on

    def reading(self):
        """The latest readings as a dict: every reading key (None when unknown), status, fault.
        A copy of a dict made once with every key: one allocation of its final size, where
        filling a new dict key by key grows (and reallocates) it several times, several times
        a second (MQTT, ThingSpeak, the status page, MeterValues)."""
        d = _TEMPLATE.copy()
        v = self.values
        keys = fields.READING_KEYS
        for i in range(len(v)):
            d[keys[i]] = v[i]
        e = v[_ENERGY]
        if e is not None:
            d[keys[_ENERGY]] = round(e, 3)
        d["status"] = self.status
        d["fault"] = self.fault
        return d
