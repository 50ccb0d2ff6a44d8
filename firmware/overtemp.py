# Enclosure over-temperature protection (pure): trips above max_c, clears below max_c - hyst_c.
FAULT = "HighTemperature"


class OverTemp:
    def __init__(self, max_c, hyst_c):
        self.max_c = max_c
        self.hyst_c = hyst_c
        self.tripped = False

    def update(self, temp_c):
        """True while the enclosure is too hot. None (no reading) keeps the current state."""
        if temp_c is None:
            return self.tripped
        if self.tripped:
            if temp_c < self.max_c - self.hyst_c:
                self.tripped = False
        elif temp_c > self.max_c:
            self.tripped = True
        return self.tripped
