# The unix board's RFID reader (board.rfid_uid), loaded by board.py only for a scenario with
# cards: "rfid": [[5, "04A1B2C3"], ...] (a card held to the reader for 0.6 s at that time), the
# timeline's [t, "rfid_tap", "04A1B2C3"], or "rfid_control": "rfid.txt" (a card's UID in hex read
# from that file in the flash directory every 0.5 s, and the file removed: a test taps when it
# is ready). Integer milliseconds; a poll with no card due allocates nothing.
import os

_CARD_MS = 600         # how long a simulated card stays on the reader
_GAP_MS = 1000         # and at least how long none is there before the control file's next


def uid_of(text):
    """A card's UID from its hex text ("04A1B2C3"): 4, 7 or 10 bytes, as cards have."""
    b = bytes.fromhex(text)
    if len(b) not in (4, 7, 10):
        raise ValueError("an RFID UID is 4, 7 or 10 bytes, not %r" % text)
    return b


class Reader:
    def __init__(self, sc):
        self.sc = sc
        # (ms since boot, UID bytes), made here so that a poll allocates nothing
        self.taps = sorted([(int(t * 1000), uid_of(u)) for t, u in sc.get("rfid") or ()],
                           key=lambda e: e[0])
        self.i = 0
        self.card = None       # the UID on the reader now, and until when (ms since boot)
        self.card_end = 0
        self.ctl_due = 0

    def uid(self, now):
        """The card on the reader at `now` (ms since boot), or None."""
        if self.card is not None:
            if now < self.card_end:
                return self.card
            self.card = None
        uid = None
        sc = self.sc
        taps = self.taps
        if self.i < len(taps) and taps[self.i][0] <= now:
            uid = taps[self.i][1]
            self.i += 1
        elif sc.get("rfid_tap"):          # set by the timeline
            uid = uid_of(sc["rfid_tap"])
            sc["rfid_tap"] = None
        elif sc.get("rfid_control") and now >= self.ctl_due:
            self.ctl_due = now + 500
            try:
                with open(sc["rfid_control"]) as f:
                    text = f.read().strip()
                os.remove(sc["rfid_control"])
                uid = uid_of(text)
            except (OSError, ValueError):
                pass     # no card yet
        if uid is not None:
            self.card = uid
            self.card_end = now + _CARD_MS
            self.ctl_due = self.card_end + _GAP_MS   # a hand takes it away first
        return uid
