"""Station settings as dotted config keys: from provision flags, `--set KEY=VALUE` and
fleet inventory files (CSV or TOML, one row per station).

Columns (CSV) or keys (TOML) are the board config's dotted keys (`wifi.ssid`,
`mqtt.port`) or the names of `picocharge provision`'s flags (`ssid`, `mqtt-port`,
`thingspeak-key`). A `port` column pins a row to a board's serial port; a `ca-cert`
column names the row's CA certificate file (on this computer, relative to the inventory),
as `picocharge provision --ca-cert` does for every row; `client-cert` and `client-key`
columns name the station's own certificate and key files (OCPP security profile 3, as
`--client-cert`/`--client-key` do for one board). Values are
converted to the schema's type (firmware/config.py), so "1884" becomes 1884 for mqtt.port.
"""
import csv
import difflib
from pathlib import Path

from .firmware import config as fwconfig

# provision flag name -> dotted config key
FLAG_KEYS = {
    "station-id": "station_id",
    "ssid": "wifi.ssid",
    "wifi-password": "wifi.password",
    "country": "wifi.country",
    "ocpp-url": "ocpp.url",
    "ocpp-password": "ocpp.password",
    "id-tag": "ocpp.id_tag",
    "thingspeak-channel": "thingspeak.channel_id",
    "thingspeak-key": "thingspeak.write_key",
    "thingspeak-url": "thingspeak.url",
    "mqtt-host": "mqtt.host",
    "mqtt-port": "mqtt.port",
    "mqtt-user": "mqtt.user",
    "mqtt-password": "mqtt.password",
    "mqtt-prefix": "mqtt.prefix",
    "log-level": "log_level",
}
# setting these also switches their uplink on, unless the row or flags say otherwise
IMPLIES = {"thingspeak.write_key": ("thingspeak.enabled", True),
           "mqtt.host": ("mqtt.enabled", True)}
# files on this computer: ca-cert for --ca-cert, client-cert/client-key for --client-cert/--client-key
META_COLUMNS = ("port", "ca-cert", "client-cert", "client-key")


class InventoryError(ValueError):
    pass


def spec(dotted):
    """The schema leaf (type, default, check) of a dotted key, or InventoryError."""
    node = fwconfig.SCHEMA
    parts = dotted.split(".")
    for i, p in enumerate(parts):
        if not isinstance(node, dict) or p not in node:
            where = ".".join(parts[:i]) or "the top level"
            known = sorted(node) if isinstance(node, dict) else []
            raise InventoryError("unknown config key %r (known under %s: %s)" % (
                dotted, where, ", ".join(known)))
        node = node[p]
    if isinstance(node, dict):
        raise InventoryError("%r is a section; name one of its keys: %s" % (
            dotted, ", ".join(dotted + "." + k for k in sorted(node))))
    return node


def key_of(name):
    """A column/flag name or dotted key -> dotted key (InventoryError if unknown)."""
    name = name.strip()
    k = FLAG_KEYS.get(name.replace("_", "-"), name)
    spec(k)
    return k


def coerce(dotted, value):
    """`value` (a string from a CSV cell or --set, or a TOML value) as the schema's type."""
    typ = spec(dotted)[0]
    shown = "***" if fwconfig.is_secret(dotted) else repr(value)
    if not isinstance(value, str):
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value  # TOML is typed already: the schema check names any mismatch
    v = value.strip() if typ is not str else value
    if typ is bool:
        low = v.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise InventoryError("%s: %s is not a boolean (use true or false)" % (dotted, shown))
    if typ is int:
        try:
            return int(v)
        except ValueError:
            raise InventoryError("%s: %s is not a whole number" % (dotted, shown)) from None
    if typ is float:
        try:
            return float(v)
        except ValueError:
            raise InventoryError("%s: %s is not a number" % (dotted, shown)) from None
    return v


def parse_set(item):
    """'mqtt.port=1884' -> ('mqtt.port', 1884)."""
    if "=" not in item:
        raise InventoryError("--set %r: expected KEY=VALUE, e.g. --set mqtt.port=1884" % item)
    k, v = item.split("=", 1)
    k = key_of(k)
    return k, coerce(k, v)


def set_dotted(d, dotted, value):
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def all_keys(node=None, prefix=""):
    """Every dotted config key of the firmware's schema."""
    node = fwconfig.SCHEMA if node is None else node
    out = []
    for k, v in node.items():
        if isinstance(v, dict):
            out += all_keys(v, prefix + k + ".")
        else:
            out.append(prefix + k)
    return out


def check_column(name, where):
    """InventoryError naming the column `name` at `where` if it is neither a meta column, a
    provision flag's name nor a config key, with the closest names and what columns may be."""
    col = name.strip()
    if col in META_COLUMNS:
        return
    try:
        key_of(col)
        return
    except InventoryError:
        pass
    names = list(META_COLUMNS) + sorted(FLAG_KEYS) + all_keys()
    close = difflib.get_close_matches(col, names, n=3, cutoff=0.6)
    raise InventoryError(
        "%s: unknown column %r%s. A column is one of provision's flag names (%s), a config key "
        "(wifi.ssid, mqtt.port, sensors.current_scale ...: see firmware/config.py) or %s"
        % (where, col, " (did you mean %s?)" % " or ".join(close) if close else "",
           ", ".join(sorted(FLAG_KEYS)), " or ".join(META_COLUMNS)))


def with_implied(values):
    """Add the implied switches (a ThingSpeak key turns ThingSpeak on) unless set explicitly."""
    out = dict(values)
    for k, (switch, on) in IMPLIES.items():
        if out.get(k) and switch not in out:
            out[switch] = on
    return out


def _row(raw, where):
    """A raw row (dict of column -> value) -> (dotted values, meta)."""
    values, meta = {}, {}
    for col, v in raw.items():
        if col is None:
            raise InventoryError("%s: more cells than columns" % where)
        if v is None or (isinstance(v, str) and v.strip() == ""):
            continue
        if col.strip() in META_COLUMNS:
            meta[col.strip()] = str(v).strip()
            continue
        try:
            k = key_of(col)
            values[k] = coerce(k, v)
        except InventoryError as e:
            raise InventoryError("%s: %s" % (where, e)) from None
    if not values.get("station_id"):
        raise InventoryError("%s: no station_id (add a station_id or station-id column)" % where)
    return values, meta


def load(path):
    """[(values, meta, where)] for each station of a CSV or TOML inventory."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InventoryError("cannot read inventory %s: %s" % (path, e.strerror)) from None
    rows = []
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise InventoryError("reading TOML needs Python 3.11 or `pip install tomli`; "
                                     "or use a CSV inventory") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise InventoryError("%s is not valid TOML: %s" % (path, e)) from None
        common = {k: v for k, v in doc.items() if k not in ("station", "stations")}
        for k in flatten(common):
            check_column(k, "%s, the settings above the [[station]] tables" % path.name)
        stations = doc.get("station", doc.get("stations"))
        if not isinstance(stations, list) or not stations:
            raise InventoryError("%s has no [[station]] tables (one per station, e.g. "
                                 "[[station]]\\nstation_id = \"CP-1\")" % path)
        for i, st in enumerate(stations, 1):
            for k in flatten(st) if isinstance(st, dict) else ():
                check_column(k, "%s, station %d" % (path.name, i))
            merged = flatten(common)
            merged.update(flatten(st))
            rows.append(_row(merged, "%s, station %d" % (path.name, i)) + ("%s, station %d" % (path.name, i),))
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise InventoryError("%s is empty: the first line names the columns" % path)
        for n, col in enumerate(reader.fieldnames, 1):
            check_column(col, "%s, line 1 (the header), column %d" % (path.name, n))
        for raw in reader:   # line_num: where the row ends (a quoted cell may span lines)
            where = "%s, line %d" % (path.name, reader.line_num)
            rows.append(_row(raw, where) + (where,))
        if not rows:
            raise InventoryError("%s has a header but no station rows" % path)
    else:
        raise InventoryError("inventory %s: use a .csv or .toml file" % path)
    seen = {}
    for values, _meta, where in rows:
        sid = values["station_id"]
        if sid in seen:
            raise InventoryError("station %s appears twice (%s and %s)" % (sid, seen[sid], where))
        seen[sid] = where
    return rows
