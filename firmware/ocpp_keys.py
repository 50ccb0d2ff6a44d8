# OCPP 1.6 configuration keys: GetConfiguration / ChangeConfiguration. Defaults come from the
# board config (config.json, "ocpp" section); values changed by the central system persist in
# ocpp_keys.json on flash and override the config at boot. Pure logic plus one small file.
#
# The keys' table is one string, a line per key, read when a key's kind is needed (boot,
# GetConfiguration, ChangeConfiguration): as a dict of tuples it took ~6 KB more heap for good
# (64-bit port; ocpp_keys 8,000 -> ~2,000 bytes imported), and loaded per call it needed as much
# at once beside every other task, which a 192K heap did not have.
import json
import os

import ocppj

KEYS_FILE = "ocpp_keys.json"

# name|kind|access|default|minimum, sorted by name. kind: i integer, b boolean, m comma-separated
# measurands (at most its ...MaxLength), s string; access: w writable, r read-only; a default
# of * comes from the config (_from_cfg); an empty minimum: none. The Smart Charging limits are
# ocpp_smart's _MAX_STACK, _MAX_PERIODS, _MAX_PROFILES.
_TABLE = """
AllowOfflineTxForUnknownId|b|w|false|
AuthorizationCacheEnabled|b|w|true|
AuthorizeRemoteTxRequests|b|w|false|
ChargeProfileMaxStackLevel|i|r|8|
ChargingScheduleAllowedChargingRateUnit|s|r|Current,Power|
ChargingScheduleMaxPeriods|i|r|24|
ClockAlignedDataInterval|i|w|0|0
ConnectionTimeOut|i|w|*|1
ConnectorPhaseRotation|s|w|NotApplicable|
GetConfigurationMaxKeys|i|r|50|
HeartbeatInterval|i|w|*|1
LocalAuthListEnabled|b|w|true|
LocalAuthListMaxLength|i|r|1000|
LocalAuthorizeOffline|b|w|true|
LocalPreAuthorize|b|w|false|
MaxChargingProfilesInstalled|i|r|8|
MeterValueSampleInterval|i|w|*|0
MeterValuesAlignedData|m|w|Energy.Active.Import.Register,Temperature|
MeterValuesAlignedDataMaxLength|i|r|5|
MeterValuesSampledData|m|w|Energy.Active.Import.Register,Current.Import,Voltage,Power.Active.Import,Temperature|
MeterValuesSampledDataMaxLength|i|r|5|
NumberOfConnectors|i|r|1|
ReserveConnectorZeroSupported|b|r|false|
ResetRetries|i|w|1|0
SendLocalListMaxLength|i|r|10|
StopTransactionOnEVSideDisconnect|b|r|true|
StopTransactionOnInvalidId|b|w|true|
StopTxnAlignedData|m|w||
StopTxnAlignedDataMaxLength|i|r|0|
StopTxnSampledData|m|w|Energy.Active.Import.Register|
StopTxnSampledDataMaxLength|i|r|5|
SupportedFeatureProfiles|s|r|Core,FirmwareManagement,LocalAuthListManagement,RemoteTrigger,Reservation,SmartCharging|
TransactionMessageAttempts|i|w|3|1
TransactionMessageRetryInterval|i|w|10|1
UnlockConnectorOnEVSideDisconnect|b|r|false|
WebSocketPingInterval|i|w|30|0
"""
# keys whose change only takes effect after a reboot
_REBOOT = ("ConnectorPhaseRotation",)


def _from_cfg(ocfg):
    return {"HeartbeatInterval": ocfg["heartbeat_s"],
            "MeterValueSampleInterval": ocfg["meter_interval_s"],
            "ClockAlignedDataInterval": ocfg["clock_aligned_s"],
            "ConnectionTimeOut": ocfg["connection_timeout_s"]}


def row(name):
    """[name, kind, access, default, minimum] of key `name` (strings), or None if unknown."""
    if "|" in name or "\n" in name:   # it would match across the table's lines
        return None
    i = _TABLE.find("\n" + name + "|")
    if i < 0:
        return None
    return _TABLE[i + 1:_TABLE.find("\n", i + 1)].split("|")


def names():
    """Every key's name, in name order."""
    return [ln[:ln.find("|")] for ln in _TABLE.split("\n") if ln]


def parse_value(name, text, r=None):
    """The typed value of `text` for key `name`, or ValueError saying why not."""
    _n, kind, _a, _d, lo = r or row(name)
    if kind == "i":
        t = text.strip()
        if not t or not (t.isdigit() or (t[0] == "-" and t[1:].isdigit())):
            raise ValueError("%s must be an integer" % name)
        v = int(t)
        if lo and v < int(lo):
            raise ValueError("%s must be at least %s" % (name, lo))
        return v
    if kind == "b":
        t = text.strip().lower()
        if t not in ("true", "false"):
            raise ValueError("%s must be true or false" % name)
        return t == "true"
    if kind == "m":
        ms = ocppj.check_measurands(text)
        n = int(row(name + "MaxLength")[3])
        if len(ms) > n:
            raise ValueError("%s: at most %d measurands" % (name, n))
        return ",".join(ms)
    return text


def show(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


class Keys:
    def __init__(self, ocpp_cfg, path=KEYS_FILE):
        self.path = path
        self.values = {}
        # the writable keys only: a read-only one is read from the table when asked for (rarely:
        # GetConfiguration, a SendLocalList), not held in the heap (35 keys in this dict took
        # ~1 KB more of it than 23 on the 64-bit port)
        for ln in _TABLE.split("\n"):
            if ln:
                r = ln.split("|")
                if r[3] != "*" and r[2] == "w":
                    self.values[r[0]] = parse_value(r[0], r[3], r)
        self.values.update(_from_cfg(ocpp_cfg))
        self.changed = {}     # what the central system set (persisted)
        self.extra = {}       # internal persisted state (e.g. availability), not a key
        self._load()

    def _load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
            keys = data.get("keys") or {}
            extra = data.get("extra") or {}
            keys.items()
            extra.items()
        except (OSError, ValueError, AttributeError):
            return  # missing or unreadable: the defaults from config.json stand
        for name, text in keys.items():
            if isinstance(name, str) and isinstance(text, str) and row(name):
                try:
                    self.values[name] = parse_value(name, text)
                    self.changed[name] = text
                except ValueError:
                    pass
        self.extra = extra

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"keys": self.changed, "extra": self.extra}, f)
        os.rename(tmp, self.path)

    def __getitem__(self, name):
        v = self.values.get(name)
        if v is None:
            r = row(name)
            if r is None or r[2] != "r":
                raise KeyError(name)
            return parse_value(name, r[3], r)
        return v

    def measurands(self, name="MeterValuesSampledData"):
        return ocppj.split_csl(self[name])

    def set_extra(self, k, v):
        self.extra[k] = v
        self.save()

    def get_configuration(self, keys=None):
        """GetConfiguration.conf payload: known keys (all when `keys` is empty, in name order)
        and unknown ones, in the order asked."""
        known = []
        unknown = []
        for name in keys or names():
            r = row(name)
            if r:
                known.append({"key": name, "readonly": r[2] == "r", "value": show(self[name])})
            else:
                unknown.append(name)
        out = {}
        if known:
            out["configurationKey"] = known
        if unknown:
            out["unknownKey"] = unknown
        return out

    def change(self, name, text):
        """ChangeConfiguration: 'Accepted', 'Rejected', 'RebootRequired' or 'NotSupported'."""
        r = row(name)
        if r is None:
            return "NotSupported"
        if r[2] == "r":
            return "Rejected"
        try:
            v = parse_value(name, text, r)
        except ValueError:
            return "Rejected"
        self.values[name] = v
        self.changed[name] = show(v)
        self.save()
        return "RebootRequired" if name in _REBOOT else "Accepted"
