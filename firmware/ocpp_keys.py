# OCPP 1.6 configuration keys: GetConfiguration / ChangeConfiguration. Defaults come from the
# board config (config.json, "ocpp" section); values changed by the central system persist in
# ocpp_keys.json on flash and override the config at boot. Pure logic plus one small file.
import json
import os

import ocppj

KEYS_FILE = "ocpp_keys.json"

_INT = "i"
_BOOL = "b"
_CSL = "m"   # comma-separated measurands
_STR = "s"

# name: (kind, writable, default, minimum or None). Defaults of None are filled from the config.
# Smart Charging's read-only keys are in cs_config (SMART_KEYS): out of the heap between calls.
SPEC = {
    "AuthorizeRemoteTxRequests": (_BOOL, True, False, None),
    "ClockAlignedDataInterval": (_INT, True, 0, 0),
    "ConnectionTimeOut": (_INT, True, None, 1),
    "ConnectorPhaseRotation": (_STR, True, "NotApplicable", None),
    "GetConfigurationMaxKeys": (_INT, False, 50, None),
    "HeartbeatInterval": (_INT, True, None, 1),
    "LocalAuthorizeOffline": (_BOOL, True, True, None),
    "LocalPreAuthorize": (_BOOL, True, False, None),
    "MeterValuesAlignedData": (_CSL, True, ocppj.DEFAULT_ALIGNED, None),
    "MeterValuesAlignedDataMaxLength": (_INT, False, 5, None),
    "MeterValuesSampledData": (_CSL, True, ocppj.DEFAULT_MEASURANDS, None),
    "MeterValuesSampledDataMaxLength": (_INT, False, 5, None),
    "MeterValueSampleInterval": (_INT, True, None, 0),
    "NumberOfConnectors": (_INT, False, 1, None),
    "ResetRetries": (_INT, True, 1, 0),
    "StopTransactionOnEVSideDisconnect": (_BOOL, False, True, None),
    "StopTransactionOnInvalidId": (_BOOL, True, True, None),
    "StopTxnAlignedData": (_CSL, True, "", None),
    "StopTxnAlignedDataMaxLength": (_INT, False, 0, None),  # not put in transactionData
    "StopTxnSampledData": (_CSL, True, "Energy.Active.Import.Register", None),
    "StopTxnSampledDataMaxLength": (_INT, False, 5, None),
    "SupportedFeatureProfiles": (_STR, False, "Core,FirmwareManagement,RemoteTrigger,SmartCharging", None),
    "TransactionMessageAttempts": (_INT, True, 3, 1),
    "TransactionMessageRetryInterval": (_INT, True, 10, 1),
    "UnlockConnectorOnEVSideDisconnect": (_BOOL, False, False, None),
    "WebSocketPingInterval": (_INT, True, 30, 0),
}
# keys whose change only takes effect after a reboot
_REBOOT = ("ConnectorPhaseRotation",)


def _from_cfg(ocfg):
    return {"HeartbeatInterval": ocfg["heartbeat_s"],
            "MeterValueSampleInterval": ocfg["meter_interval_s"],
            "ClockAlignedDataInterval": ocfg["clock_aligned_s"],
            "ConnectionTimeOut": ocfg["connection_timeout_s"]}


def parse_value(name, text):
    """The typed value of `text` for key `name`, or ValueError saying why not."""
    kind, _w, _d, lo = SPEC[name]
    if kind == _INT:
        t = text.strip()
        if not t or not (t.isdigit() or (t[0] == "-" and t[1:].isdigit())):
            raise ValueError("%s must be an integer" % name)
        v = int(t)
        if lo is not None and v < lo:
            raise ValueError("%s must be at least %d" % (name, lo))
        return v
    if kind == _BOOL:
        t = text.strip().lower()
        if t not in ("true", "false"):
            raise ValueError("%s must be true or false" % name)
        return t == "true"
    if kind == _CSL:
        ms = ocppj.check_measurands(text)
        n = SPEC[name + "MaxLength"][2]
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
        for name, spec in SPEC.items():
            self.values[name] = spec[2]
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
            if name in SPEC and isinstance(text, str):
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
        return self.values[name]

    def measurands(self, name="MeterValuesSampledData"):
        return ocppj.split_csl(self.values[name])

    def set_extra(self, k, v):
        self.extra[k] = v
        self.save()

    def get_configuration(self, keys=None):
        """GetConfiguration.conf payload: known keys (all when `keys` is empty) and unknown ones."""
        known = []
        unknown = []
        names = keys if keys else sorted(SPEC)
        for name in names:
            if name in SPEC:
                known.append({"key": name, "readonly": not SPEC[name][1], "value": show(self.values[name])})
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
        if name not in SPEC:
            return "NotSupported"
        if not SPEC[name][1]:
            return "Rejected"
        try:
            v = parse_value(name, text)
        except ValueError:
            return "Rejected"
        self.values[name] = v
        self.changed[name] = show(v)
        self.save()
        return "RebootRequired" if name in _REBOOT else "Accepted"
