# Shared station state: one object every task reads and updates (no I/O here).
from compat import ticks_ms, ticks_diff


class State:
    def __init__(self):
        self.boot_ms = ticks_ms()
        # latest readings (None until first good read)
        self.temp_c = None
        self.humidity = None
        self.current_a = None
        self.voltage_v = None
        self.power_w = None
        self.energy_wh = 0.0
        self.chip_temp_c = None
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
        # links: "up" / "down" / "off" (not configured)
        self.ip = ""
        self.links = {"wifi": "down", "ocpp": "off", "mqtt": "off", "thingspeak": "off"}
        self.counters = {"ts_sent": 0, "ts_fail": 0, "mqtt_sent": 0, "mqtt_fail": 0}

    def uptime_s(self):
        return ticks_diff(ticks_ms(), self.boot_ms) // 1000

    def apply_relay(self, board):
        """Close the relay iff power is wanted, the connector is available and nothing is faulted."""
        on = self.charge_wanted and self.available and self.fault is None
        if on != self.relay:
            board.relay(on)
            self.relay = on
        return on

    def reading(self):
        return {
            "temp_c": self.temp_c, "humidity": self.humidity, "current_a": self.current_a,
            "voltage_v": self.voltage_v, "power_w": self.power_w,
            "energy_wh": None if self.energy_wh is None else round(self.energy_wh, 3),
            "chip_temp_c": self.chip_temp_c, "status": self.status, "fault": self.fault,
        }
