# Enclosure protection (pure): over-temperature trips above max_c and clears below
# max_c - hyst_c; a DHT11 that gives no valid reading for dead_cycles read cycles in a row
# is a fault too, since the protection is blind without it. It clears with the next valid read.
FAULT = "HighTemperature"
# OCPP 1.6 has no ChargePointErrorCode for a dead sensor: OtherError, with the reason as info
SENSOR_FAULT = "OtherError"
SENSOR_INFO = "DHT11 not answering"
DEAD_CYCLES = 3


class OverTemp:
    def __init__(self, max_c, hyst_c, dead_cycles=DEAD_CYCLES):
        self.max_c = max_c
        self.hyst_c = hyst_c
        self.dead_cycles = dead_cycles
        self.tripped = False
        self.missed = 0  # read cycles in a row without a valid reading (from boot on)

    def update(self, celsius):
        """True while the enclosure is too hot. None (no reading) keeps the current state."""
        if celsius is None:
            return self.tripped
        if self.tripped:
            if celsius < self.max_c - self.hyst_c:
                self.tripped = False
        elif celsius > self.max_c:
            self.tripped = True
        return self.tripped

    def read_cycle(self, ok):
        """Count one DHT11 read cycle (ok: it gave a valid reading). True while the sensor is
        dead: its last reading must then no longer be reported or trusted."""
        self.missed = 0 if ok else self.missed + 1
        return self.sensor_dead()

    def sensor_dead(self):
        return self.missed >= self.dead_cycles

    def fault(self):
        """(errorCode, info) of the enclosure's fault, or (None, None). A dead sensor comes
        first: the over-temperature state it last saw stays latched behind it."""
        if self.sensor_dead():
            return SENSOR_FAULT, SENSOR_INFO
        if self.tripped:
            return FAULT, None
        return None, None
