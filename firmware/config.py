# Board configuration: config.json validated against SCHEMA at boot, with defaults.
# Pure logic, shared with CPython: `picocharge provision` validates with this very module
# before anything is written to a board.
import json

try:
    from . import fields   # CPython, as picocharge.firmware.config
except ImportError:
    import fields          # the board (and firmware/ on sys.path)

CONFIG_FILE = "config.json"

# Each leaf: (type, default, check) where check is None, a (min, max) tuple for numbers,
# a tuple of allowed strings, or "url"/"id"/"ssid"/"path". Keys ending in SECRET_SUFFIXES are secrets.
# ca_cert: a CA certificate file on the board's flash (DER, or PEM) the server's certificate must
# chain to; "" = TLS without verifying the server (a warning at each connection).
# ocpp.client_cert / ocpp.client_key: the station's own certificate and private key on flash
# (DER, or PEM, which the board converts), presented in the wss:// handshake: OCPP security
# profile 3, the central system knows the station by the certificate and needs no password.
_URL = "url"
_PATH = "path"
CA_KEYS = ("ocpp.ca_cert", "mqtt.ca_cert", "thingspeak.ca_cert")
CLIENT_KEYS = ("ocpp.client_cert", "ocpp.client_key")
SCHEMA = {
    "station_id": (str, "", "id"),
    "log_level": (str, "info", ("debug", "info", "warn", "error")),
    "wifi": {
        "ssid": (str, "", "ssid"),
        "password": (str, "", None),
        "country": (str, "", None),
        "timeout_s": (int, 20, (1, 300)),
        "backoff_max_s": (int, 300, (1, 3600)),
        "ntp_host": (str, "pool.ntp.org", None),   # sets the clock TLS checks certificates by; "" = never
    },
    "ocpp": {
        "url": (str, "", _URL),
        "password": (str, "", None),
        "id_tag": (str, "", None),
        "heartbeat_s": (int, 300, (1, 86400)),
        "meter_interval_s": (int, 60, (1, 86400)),
        # 900 s: idle stations report their enclosure (issue 16); a common ClockAlignedDataInterval,
        # 96 readings a day per station, a quarter of the default MeterValues traffic
        "clock_aligned_s": (int, 900, (0, 86400)),
        "connection_timeout_s": (int, 60, (1, 3600)),
        "call_timeout_s": (int, 30, (1, 300)),
        "reconnect_max_s": (int, 120, (1, 3600)),
        "ca_cert": (str, "", _PATH),
        "client_cert": (str, "", _PATH),
        "client_key": (str, "", _PATH),
    },
    "thingspeak": {
        "enabled": (bool, False, None),
        "url": (str, "https://api.thingspeak.com", _URL),
        "channel_id": (int, 0, (0, 2147483647)),
        "write_key": (str, "", None),
        "min_interval_s": (int, 15, (1, 86400)),
        "ca_cert": (str, "", _PATH),
    },
    "mqtt": {
        "enabled": (bool, False, None),
        "host": (str, "", None),
        "port": (int, 1883, (1, 65535)),
        "user": (str, "", None),
        "password": (str, "", None),
        "prefix": (str, "picocharge", None),
        "keepalive_s": (int, 60, (0, 65535)),
        "interval_s": (int, 10, (1, 86400)),
        "ssl": (bool, False, None),
        "ca_cert": (str, "", _PATH),
    },
    # readings kept on flash for ThingSpeak and MQTT while they cannot be sent (flashq.py):
    # flash_kb for each enabled uplink; past it, older readings are thinned to one per thin_s
    # (oldest first) before any is dropped. 32 KB holds 48 h at the default intervals.
    # journal_kb: the OCPP journal's budget of pending messages (journal.py; ~75 MeterValues,
    # its file up to twice that between compactions): past it the oldest periodic MeterValues
    # go, never a Start/StopTransaction. The defaults fit a Pico W's flash beside two firmware
    # slots (docs/firmware.md, "Flash layout on a Pico W").
    "backlog": {
        "flash_kb": (int, 32, (4, 512)),
        "thin_s": (int, 900, (60, 86400)),
        "journal_kb": (int, 64, (16, 512)),
    },
    "web": {
        "enabled": (bool, True, None),
        "port": (int, 80, (0, 65535)),
    },
    "sensors": {
        "interval_s": (int, 5, (1, 3600)),
        "mains_hz": (int, 50, (45, 65)),
        "cycles": (int, 4, (1, 50)),
        "samples_per_cycle": (int, 40, (8, 200)),
        # amps / volts per ADC count after offset removal; defaults span +-49 A and +-491 V peak.
        # Calibrate per board against a reference meter. Offsets: DC bias in counts, 0 = from each burst.
        "current_scale": (float, 0.0015, (0.0, 1.0)),
        "voltage_scale": (float, 0.015, (0.0, 10.0)),
        "current_offset": (float, 0.0, (-65535.0, 65535.0)),
        "voltage_offset": (float, 0.0, (-65535.0, 65535.0)),
        "dht_retries": (int, 3, (0, 10)),
    },
    # over-the-air updates and diagnostics (docs/ota.md, docs/firmware.md "Updates over the air")
    "ota": {
        # the fleet release key: 64 hex digits (`picocharge release key`); "" = updates refused
        "key": (str, "", "hexkey"),
        # a new version is on trial until a BootNotification is Accepted within this time ...
        "trial_s": (int, 300, (10, 86400)),
        # ... and for at most this many boots (watchdog resets and crashes included)
        "trial_boots": (int, 3, (1, 20)),
        # the log ring on flash GetDiagnostics uploads from, in KiB (0 = none)
        "diag_kb": (int, 32, (0, 256)),
    },
    "safety": {
        "max_temp_c": (float, 50.0, (0.0, 100.0)),
        "hysteresis_c": (float, 5.0, (0.5, 50.0)),
        # read cycles in a row without a valid DHT11 reading before it counts as dead (a fault)
        "dht_dead_cycles": (int, 3, (1, 100)),
    },
    # the charging circuit, for Smart Charging (docs/ocpp.md) and the control pilot: the most
    # the cable, contactor and supply allow per phase (the pilot never offers more), and the
    # voltage and phases a limit in W is converted to amperes at
    "charger": {
        "max_current_a": (int, 16, (6, 80)),
        "supply_v": (int, 230, (100, 480)),
        "phases": (int, 1, (1, 3)),
        # the IEC 61851-1 control pilot drives and gates charging (evse.py); off: the relay
        # follows the transaction alone, as before
        "pilot": (bool, False, None),
        # an RFID reader (board.rfid_uid: an MFRC522 on a Pico W) polled every 200 ms: a card's
        # UID is an idTag that starts and stops a transaction (rfid.py, authz.py); off: no poll
        "rfid": (bool, False, None),
    },
}

SECRET_KEYS = ("password", "write_key", "key", "secret", "token")


class ConfigError(ValueError):
    # `key` is the dotted path of the offending key, e.g. "mqtt.port"
    def __init__(self, key, problem):
        super().__init__("config key '%s': %s" % (key, problem))
        self.key = key
        self.problem = problem


def is_secret(key):
    leaf = key.rsplit(".", 1)[-1]
    for s in SECRET_KEYS:
        if leaf == s or leaf.endswith("_" + s):
            return True
    return False


def _check_leaf(path, spec, value):
    typ, _default, check = spec
    if typ is float and type(value) is int:
        value = float(value)
    if typ is int and type(value) is float and value == int(value):
        value = int(value)
    if type(value) is not typ:
        raise ConfigError(path, "expected %s, got %s %r" % (
            typ.__name__, type(value).__name__, "***" if is_secret(path) else value))
    if check is None:
        return value
    if isinstance(check, tuple) and len(check) == 2 and not isinstance(check[0], str):
        if not (check[0] <= value <= check[1]):
            raise ConfigError(path, "%r is out of range %r..%r" % (value, check[0], check[1]))
    elif isinstance(check, tuple):
        if value not in check:
            raise ConfigError(path, "%r is not one of %s" % (value, ", ".join(check)))
    elif check == _URL:
        if value and not _url_ok(value):
            raise ConfigError(path, "%r is not a URL (expected ws://, wss://, http:// or https://host...)" % value)
    elif check == "id":
        if value:   # "" is the default: validate() says it is required
            why = fields.station_id_error(value)
            if why:
                raise ConfigError(path, why)
    elif check == _PATH:
        if len(value) > 64 or " " in value or "\\" in value:
            raise ConfigError(path, "%r is not a file path on the board (at most 64 characters, no "
                                    "spaces or backslashes), e.g. ca.der" % value)
    elif check == "hexkey":
        if value and (len(value) != 64 or not _is_hex(value)):
            raise ConfigError(path, "is not a release key: 64 hex digits expected (got %d characters); "
                                    "make one with `picocharge release key` and provision it with "
                                    "--release-key-file FILE" % len(value))
    elif check == "ssid":
        if len(value.encode()) > 32:
            raise ConfigError(path, "Wi-Fi SSID is longer than 32 bytes")
    return value


def _is_hex(s):
    for c in s:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def _id_char(c):
    """Whether c may be in a station id (tools/cmd_run.py names a simulated board with it)."""
    return fields.station_id_error(c) is None


def _url_ok(u):
    for scheme in ("ws://", "wss://", "http://", "https://"):
        if u.startswith(scheme):
            host = u[len(scheme):].split("/", 1)[0]
            return len(host) > 0 and " " not in u
    return False


def _validate(schema, data, prefix):
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "(top)", "expected an object, got %s" % type(data).__name__)
    out = {}
    for k in data:
        if k not in schema:
            raise ConfigError(prefix + k, "unknown key (known: %s)" % ", ".join(sorted(schema)))
    for k, spec in schema.items():
        path = prefix + k
        if isinstance(spec, dict):
            out[k] = _validate(spec, data.get(k, {}), path + ".")
        elif k in data:
            out[k] = _check_leaf(path, spec, data[k])
        else:
            out[k] = spec[1]
    return out


def validate(data):
    """Return a full config (defaults filled in) or raise ConfigError naming the key."""
    cfg = _validate(SCHEMA, data, "")
    if not cfg["station_id"]:
        raise ConfigError("station_id", "is required")
    ts = cfg["thingspeak"]
    if ts["enabled"] and not ts["write_key"]:
        raise ConfigError("thingspeak.write_key", "is required when thingspeak.enabled is true")
    mq = cfg["mqtt"]
    if mq["enabled"] and not mq["host"]:
        raise ConfigError("mqtt.host", "is required when mqtt.enabled is true")
    oc = cfg["ocpp"]
    u = oc["url"]
    if u and not (u.startswith("ws://") or u.startswith("wss://")):
        raise ConfigError("ocpp.url", "must start with ws:// or wss://")
    if bool(oc["client_cert"]) != bool(oc["client_key"]):
        k = "ocpp.client_key" if oc["client_cert"] else "ocpp.client_cert"
        raise ConfigError(k, "is required with %s: a client certificate goes with its private key" % (
            "ocpp.client_cert" if oc["client_cert"] else "ocpp.client_key"))
    if oc["client_cert"] and not u.startswith("wss://"):
        raise ConfigError("ocpp.client_cert", "is presented over TLS only: ocpp.url must start with wss://")
    return cfg


def check_files(cfg):
    """On the board, at boot: every CA file, and the client certificate and key, named in the
    config are there and start like a certificate or key (they are read in full only when
    connecting). Raises ConfigError naming the key."""
    for key in CA_KEYS:
        ca = get(cfg, key)
        if ca:
            try:
                with open(ca, "rb") as f:
                    head = f.read(32)
            except OSError:
                raise ConfigError(key, "cannot read %s on the board's flash (missing?): copy the "
                                       "CA there with `picocharge provision --ca-cert FILE`" % ca)
            if head[:1] != b"\x30" and b"-----BEGIN " not in head:
                raise ConfigError(key, "%s is not a PEM or DER X.509 certificate" % ca)
    for key in CLIENT_KEYS:
        path = get(cfg, key)
        if path:
            what = "certificate" if key.endswith("cert") else "private key"
            try:
                with open(path, "rb") as f:
                    head = f.read(32)
            except OSError:
                raise ConfigError(key, "cannot read %s on the board's flash (missing?): copy the station's %s "
                                       "there with `picocharge provision --client-cert FILE --client-key FILE`"
                                  % (path, what))
            if head[:1] != b"\x30" and b"-----BEGIN " not in head:
                raise ConfigError(key, "%s is not a PEM or DER %s" % (path, what))


def defaults():
    return _validate(SCHEMA, {}, "")


MAX_FILE_BYTES = 8192  # a full config with every key set is ~1.5 KB; CA certificates are files of their own
MAX_DEPTH = 4          # the schema nests 2 deep (section, key)


def nesting_depth(text):
    """The deepest nesting of [ and { in JSON text (those inside strings not counted)."""
    depth = top = 0
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{" or c == "[":
            depth += 1
            if depth > top:
                top = depth
        elif c == "}" or c == "]":
            depth -= 1
    return top


def load(path=CONFIG_FILE):
    """Read and validate the board's config file; raises ConfigError (key '(file)' if
    unreadable, too big or too deeply nested). The size is checked before reading and the
    nesting before parsing: a 3 MB or deeply nested file was a MemoryError traceback
    instead of the config error (exit 78 / LED code) a board shows."""
    import os

    try:
        size = os.stat(path)[6]
    except OSError:
        raise ConfigError("(file)", "%s not found: provision the board (picocharge provision)" % path)
    if size > MAX_FILE_BYTES:
        raise ConfigError("(file)", "%s is %d bytes, more than a config can be (at most %d): "
                                    "provision the board again" % (path, size, MAX_FILE_BYTES))
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError("(file)", "%s cannot be read: provision the board again" % path)
    d = nesting_depth(text)
    if d > MAX_DEPTH:
        raise ConfigError("(file)", "%s nests %d levels deep (a config has 2): provision the board "
                                    "again" % (path, d))
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError("(file)", "%s is not valid JSON (%s)" % (path, e))
    except MemoryError:
        raise ConfigError("(file)", "%s is too big to parse: provision the board again" % path)
    del text
    cfg = validate(data)
    check_files(cfg)
    return interned(cfg)


def interned(cfg):
    """cfg with its keys as interned strings (qstrs). A string constant of more than 10
    characters ("call_timeout_s") is an object of its own in a compiled module (64 bytes on
    the 64-bit port), so the held config kept the schema's key objects alive after this
    module is dropped (30 of them, ~1.9 KB); a qstr's characters are kept once, and a module
    imported after this one loads its own "call_timeout_s" as that qstr too. hasattr makes the
    qstr, a slice then returns it (under CPython: the same key)."""
    out = {}
    for k in cfg:
        v = cfg[k]
        hasattr(out, k)
        out[k[0:]] = interned(v) if type(v) is dict else v
    return out


def redact(cfg, prefix=""):
    """A copy of cfg with every secret replaced by '***' (empty secrets stay empty)."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out[k] = redact(v, prefix + k + ".")
        elif is_secret(prefix + k) and v:
            out[k] = "***"
        else:
            out[k] = v
    return out


def secrets(cfg, prefix=""):
    """The values of cfg's secrets (4 characters or more), for the log ring to mask."""
    out = []
    for k, v in cfg.items():
        if isinstance(v, dict):
            out += secrets(v, prefix + k + ".")
        elif is_secret(prefix + k) and isinstance(v, str) and len(v) >= 4:
            out.append(v)
    return out


def get(cfg, dotted):
    v = cfg
    for part in dotted.split("."):
        v = v[part]
    return v
