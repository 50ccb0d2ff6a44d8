"""`picocharge provision`: write a board's /config.json, for one board or a fleet."""
import hashlib
import json
import re
import secrets
import ssl
import sys
from pathlib import Path
import urllib.error
import urllib.parse
import urllib.request

import click

from . import device, inventory
from .firmware import config as fwconfig
from .gateway import ca as gwca
from .options import echo_json, json_option, ports_option, set_option

CONFIG = "/config.json"
TMP = "/config.json.tmp"
CA_FOR = ("ocpp", "mqtt", "thingspeak")  # the uplinks with a <name>.ca_cert key
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")


def read_ca(path, where="--ca-cert"):
    """(board file name, DER bytes, subject) of the one X.509 certificate in a PEM or DER
    file; click.BadParameter (exit 2) for anything else. The board gets DER: MicroPython's
    ssl refuses PEM in load_verify_locations(cadata=...). The name is made from the
    certificate's hash, so CAs for different uplinks never overwrite each other."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise click.BadParameter("cannot read %s: %s" % (path, e.strerror or e), param_hint=where)
    pems = _PEM_CERT.findall(data)
    if len(pems) > 1:
        raise click.BadParameter(
            "%s holds %d certificates; the board takes one: give the CA that signed the server's "
            "certificate (the root, or the intermediate) on its own" % (path, len(pems)), param_hint=where)
    if pems:
        import base64
        try:
            der = base64.b64decode(b"".join(pems[0].split()), validate=True)
        except ValueError:
            der = b""
    else:
        der = data
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if not der.startswith(b"\x30"):
            raise ssl.SSLError("not DER")
        ctx.load_verify_locations(cadata=der)  # OpenSSL parses it as an X.509 certificate
    except ssl.SSLError:
        raise click.BadParameter(
            "%s is not an X.509 certificate (PEM with -----BEGIN CERTIFICATE-----, or DER): give "
            "the CA certificate of the server, not a key or a certificate request" % path,
            param_hint=where)
    subject = ""
    for c in ctx.get_ca_certs():
        subject = ", ".join("%s=%s" % kv for rdn in c.get("subject", ()) for kv in rdn)
    return "ca-%s.der" % hashlib.sha256(der).hexdigest()[:8], der, subject


def read_client(cert, key, station_id=None, where="--client-cert/--client-key"):
    """A station's certificate and key (OCPP security profile 3), checked before any board is
    written: both parse, the key is the certificate's, and (given station_id) its CN is the
    station id. {"cn", "not_after", "cert_der", "key_der", "cert_name", "key_name"}: DER and
    the file names on the board (MicroPython's load_cert_chain takes DER only), named after
    the certificate's hash so a new pair never half-replaces the old one.
    click.BadParameter (exit 2) naming the file and what is wrong."""
    try:
        d = gwca.station_files(cert, key, station_id)
    except gwca.CaError as e:
        raise click.BadParameter(str(e), param_hint=where)
    h = hashlib.sha256(d["cert_der"]).hexdigest()[:8]
    d["cert_name"], d["key_name"] = "client-%s.der" % h, "client-%s.key" % h
    return d


def _client_files(meta, where, inventory_file, client_pair, client_dir, station_id):
    """(cert path, key path, where to blame) for a station, from its inventory columns,
    --client-cert-dir or --client-cert/--client-key; None when none is given."""
    given = meta.get("client-cert") or meta.get("client-key") or client_dir or client_pair
    if given and not station_id:
        raise click.BadParameter("a client certificate is checked against the station id (its CN): give "
                                 "--station-id", param_hint="--station-id")
    if meta.get("client-cert") or meta.get("client-key"):
        if not (meta.get("client-cert") and meta.get("client-key")):
            raise click.BadParameter("give both columns client-cert and client-key (the certificate and its key)",
                                     param_hint="%s" % where)
        base = Path(inventory_file).parent
        return base / meta["client-cert"], base / meta["client-key"], "columns client-cert/client-key in " + where
    if client_dir:
        return (Path(client_dir) / (station_id + ".crt"), Path(client_dir) / (station_id + ".key"),
                "--client-cert-dir")
    if client_pair:
        return client_pair[0], client_pair[1], "--client-cert/--client-key"
    return None


def _flag(name, help, secret=False, type=str):
    env = "PICOCHARGE_" + name.upper().replace("-", "_") if secret else None
    return click.option("--" + name, "f_" + name.replace("-", "_"), type=type, envvar=env,
                        metavar="VALUE" if not secret else "SECRET",
                        help=help + (" [env: %s]" % env if env else ""))


def _flag_values(kw, sets):
    values = {}
    for name, dotted in inventory.FLAG_KEYS.items():
        v = kw.get("f_" + name.replace("-", "_"))
        if v is not None:
            values[dotted] = inventory.coerce(dotted, v) if isinstance(v, str) else v
    for k, v in sets:   # parsed and checked by options.set_option
        values[k] = v
    return values


def _read_config(b):
    """The board's current config.json as a dict ({} when missing or unreadable)."""
    if not b.exists(CONFIG):
        return {}
    try:
        d = json.loads(b.read(CONFIG))
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _survey(port):
    """Read a board's current config and whether it has the firmware (/main.py), then let it
    boot again."""
    with device.Board(port) as b:
        cfg = _read_config(b)
        has_main = b.exists("/main.py")
        b.reboot()
    return cfg, has_main


def build(existing, common, row, fresh=False):
    """The config to write: existing (unless fresh) <- command-line values <- the row's."""
    flat = {} if fresh else inventory.flatten(existing)
    values = inventory.with_implied(dict(common, **row))
    flat.update(values)
    out = {}
    for k, v in flat.items():
        out_key = k
        inventory.set_dotted(out, out_key, v)
    return out


def write_config(port, cfg, reset=True, files=()):
    """Atomic write (tmp file, rename), read back and compare. Returns the bytes written.
    files: (name, bytes) written and checked first (the CA): a config never names a file
    that is not on the board yet."""
    data = (json.dumps(cfg, indent=2, sort_keys=True) + "\n").encode()
    with device.Board(port) as b:
        for name, content in files:
            b.write("/" + name, content)
            if b.read("/" + name) != content:
                raise click.ClickException(
                    "%s: /%s read back differs from what was written: the board's flash may be full "
                    "or failing; run `picocharge doctor`, then provision again" % (port, name))
        b.write(TMP, data)
        b.rename(TMP, CONFIG)
        back = b.read(CONFIG)
        if back != data:
            raise click.ClickException(
                "%s: %s read back differs from what was written (%d bytes written, %d read): the "
                "board's flash may be full or failing; run `picocharge doctor`, then provision again"
                % (port, CONFIG, len(data), len(back)))
        if reset:
            b.reboot()
    return data


def _api(method, url, path, token=None, body=None, timeout=10):
    """(HTTP status, raw answer) of one gateway API call; ClickException when unreachable."""
    endpoint = url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(endpoint, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    device._trace(("http", method, endpoint))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300]
    except OSError as e:
        raise click.ClickException(
            "cannot reach the gateway at %s (%s): is `picocharge gateway` running there? Nothing "
            "was written to any board; run the command again with --register-gateway once it answers"
            % (endpoint, getattr(e, "reason", e)))


_HINTS = {401: "give the gateway's API token with --gateway-token (or PICOCHARGE_GATEWAY_TOKEN)",
          403: "the token is not allowed to add stations"}


def _refused(url, path, what, code, raw):
    detail = raw.decode(errors="replace").strip()
    return click.ClickException("the gateway at %s refused %s: HTTP %d %s; %s" % (
        url.rstrip("/") + path, what, code, detail, _HINTS.get(code, "check the gateway's log")))


def is_registered(url, station_id, token=None):
    """Whether the gateway knows `station_id` (GET /api/stations/<id>: 200 yes, 404 no)."""
    path = "/api/stations/" + urllib.parse.quote(station_id, safe="")
    code, raw = _api("GET", url, path, token)
    if code in (200, 404):
        return code == 200
    raise _refused(url, path, "the look-up of station %s, nothing was written to any board" % station_id,
                   code, raw)


def check_token(url, token=None):
    """Refuse now, before any board is written, when the gateway would refuse to add a station:
    a POST /api/stations with an empty body is answered 400 (bad body) once the token is
    accepted, 401 when it is not."""
    code, raw = _api("POST", url, "/api/stations", token, body={})
    if code in (401, 403):
        raise _refused(url, "/api/stations", "the API token, nothing was written to any board", code, raw)


def register(url, station_id, password, token=None, timeout=10):
    """POST {"id", "password"} to the gateway's /api/stations; returns its JSON answer."""
    code, raw = _api("POST", url, "/api/stations", token,
                     body={"id": station_id, "password": password}, timeout=timeout)
    if code == 409:
        raise click.ClickException(
            "the gateway at %s already has station %s (registered by someone else since this command "
            "looked): run the command again; a board whose password did not change is then "
            "reported as already registered" % (url, station_id))
    if code >= 300:
        raise _refused(url, "/api/stations", "station %s" % station_id, code, raw)
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise click.ClickException("the gateway at %s answered with something that is not JSON: %r"
                                   % (url, raw[:100]))


def set_password(url, station_id, password, token=None, timeout=10):
    """PUT {"password"} to the gateway's /api/stations/<id>/password (a replaced board)."""
    path = "/api/stations/%s/password" % urllib.parse.quote(station_id, safe="")
    code, raw = _api("PUT", url, path, token, body={"password": password}, timeout=timeout)
    if code >= 300:
        raise _refused(url, path, "the new password of station %s (its board is written already: run "
                       "the command again)" % station_id, code, raw)


def _registrations(url, token, plans, surveyed, replace):
    """{station id: "new" | "registered" | "new-password"}, or ClickException (before anything
    is written) when a station the gateway already knows would get a new password without
    --replace-password: a typo in a station id must not lock a working station out."""
    out, clash = {}, []
    for port, _cfg, full, _ca, _client in plans:
        sid = full["station_id"]
        if not is_registered(url, sid, token):
            out[sid] = "new"
            continue
        old = inventory.flatten(surveyed[port]).get("ocpp.password")
        if old and old == full["ocpp"]["password"]:
            out[sid] = "registered"
        elif replace:
            out[sid] = "new-password"
        else:
            clash.append("%s (on %s)" % (sid, port))
    if clash:
        raise click.ClickException(
            "already registered with the gateway at %s, but this would give the board a new OCPP "
            "password, which the gateway would refuse: %s. Nothing was written to any board. For a "
            "replaced board, add --replace-password to give the station its new password on the "
            "gateway too (the old board is then refused); otherwise keep the board's current "
            "password (leave out --ocpp-password, any ocpp.password column or --set, and --fresh), "
            "or check the station id" % (url, ", ".join(clash)))
    if set(out.values()) - {"registered"}:
        check_token(url, token)
    return out


def _describe(cfg):
    flat = inventory.flatten(fwconfig.redact(cfg))
    return ", ".join("%s=%s" % (k, v) for k, v in sorted(flat.items()))


def _assign(rows, ports, stations, surveyed):
    """Match inventory rows to boards: a row's `port` column, else the board already holding
    that station id, else the remaining rows in order to the remaining boards. A row pinned
    to a port that is not connected is left out (listed as not connected), unless --station
    asked for it."""
    pairs, free = [], [p for p in ports]
    left, absent = [], []
    for row in rows:
        pinned = row[1].get("port")
        if pinned:
            pinned = device.resolve_port(pinned)
            if pinned in free:
                free.remove(pinned)
                pairs.append((row, pinned))
            elif pinned in ports:
                other = [r[0]["station_id"] for r, p in pairs if p == pinned]
                raise click.ClickException("%s pins station %s to port %s, which %s also pins to; "
                                           "give each row its own port" % (
                                               row[2], row[0]["station_id"], pinned, ", ".join(other)))
            elif stations:
                raise click.ClickException("%s pins station %s to port %s, which is not connected "
                                           "(connected: %s): connect it, or change its port column"
                                           % (row[2], row[0]["station_id"], pinned, ", ".join(ports) or "none"))
            else:
                absent.append(row)
        else:
            left.append(row)
    rest = []
    for row in left:
        match = [p for p in free if surveyed.get(p, {}).get("station_id") == row[0]["station_id"]]
        if match:
            free.remove(match[0])
            pairs.append((row, match[0]))
        else:
            rest.append(row)
    for row in rest:
        if not free:
            if stations:
                raise click.ClickException("no free board for station %s: connect it, or name its "
                                           "port with --port" % row[0]["station_id"])
            break
        pairs.append((row, free.pop(0)))
    assigned = [p[0] for p in pairs]
    unassigned = [r for r in rows if r not in assigned]
    return pairs, unassigned


@click.command()
@ports_option
@_flag("station-id", "Station id (charge point identity), 1-48 of A-Z a-z 0-9 - _ .")
@_flag("ssid", "Wi-Fi network name.")
@_flag("wifi-password", "Wi-Fi password.", secret=True)
@_flag("country", "Wi-Fi country code (GB, DE, US...).")
@_flag("ocpp-url", "Central system URL, ws://host:port/ocpp (the station id is appended).")
@_flag("ocpp-password", "OCPP basic-auth password (generated with --register-gateway if unset).",
       secret=True)
@_flag("thingspeak-channel", "ThingSpeak channel id.", type=int)
@_flag("thingspeak-key", "ThingSpeak write key (turns ThingSpeak uploads on).", secret=True)
@_flag("thingspeak-url", "ThingSpeak API URL (default https://api.thingspeak.com).")
@_flag("mqtt-host", "MQTT broker host (turns MQTT on).")
@_flag("mqtt-port", "MQTT broker port.", type=int)
@_flag("mqtt-user", "MQTT user name.")
@_flag("mqtt-password", "MQTT password.", secret=True)
@click.option("--ca-cert", "ca_cert", type=click.Path(dir_okay=False), metavar="FILE",
              help="CA certificate (PEM or DER) the servers' certificates must chain to: copied to "
                   "the board as DER and set as <uplink>.ca_cert, so wss://, MQTT over TLS and https:// "
                   "verify the server before sending any password or key.")
@click.option("--ca-for", "ca_for", multiple=True, type=click.Choice(CA_FOR),
              help="The uplinks --ca-cert (or an inventory's ca-cert column) is for (repeatable; "
                   "default all three). ThingSpeak's public server needs its own CA, not your "
                   "gateway's: give each its own run.")
@click.option("--client-cert", "client_cert", type=click.Path(dir_okay=False), metavar="FILE",
              help="The station's own certificate (PEM or DER, CN = its station id; `picocharge gateway ca "
                   "issue`): copied to the board as DER with --client-key and set as ocpp.client_cert, so it "
                   "signs in over wss:// without a password (OCPP security profile 3).")
@click.option("--client-key", "client_key", type=click.Path(dir_okay=False), metavar="FILE",
              help="The private key of --client-cert (unencrypted PEM or DER): copied as DER, ocpp.client_key.")
@click.option("--client-cert-dir", "client_dir", type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="A folder of <station id>.crt and <station id>.key (as `picocharge gateway ca issue --out DIR` "
                   "writes them): each board gets its own pair.")
@click.option("--release-key-file", "release_key_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="The fleet release key (`picocharge release key`), set as ota.key: the board then "
                   "installs over-the-air releases signed with it (docs/ota.md).")
@set_option
@click.option("-i", "--inventory", "inventory_file", type=click.Path(dir_okay=False, exists=True),
              help="Fleet inventory: CSV or TOML, one row per station; columns are config keys "
                   "(wifi.ssid) or these flags' names (ssid); a `port` column pins a board.")
@click.option("--only", "stations", multiple=True, metavar="STATION_ID",
              help="With --inventory: provision only the row of this station id (repeatable).")
@click.option("--station", "old_station", multiple=True, hidden=True, expose_value=True)
@click.option("--fresh", is_flag=True, help="Start from an empty config instead of the board's current one.")
@click.option("--prompt/--no-prompt", default=None,
              help="Ask for missing settings (default: when run in a terminal). Secrets are not echoed.")
@click.option("--dry-run", is_flag=True, help="Validate and show (secrets masked); write nothing.")
@click.option("--register-gateway", metavar="URL", envvar="PICOCHARGE_GATEWAY_URL",
              help="Register the station and its OCPP password with this gateway (POST URL/api/stations). "
                   "[env: PICOCHARGE_GATEWAY_URL]")
@click.option("--gateway-token", envvar=["PICOCHARGE_GATEWAY_TOKEN", "PICOCHARGE_GATEWAY_API_TOKEN"],
              metavar="SECRET",
              help="Bearer token for the gateway API (the gateway's --api-token). "
                   "[env: PICOCHARGE_GATEWAY_TOKEN, or PICOCHARGE_GATEWAY_API_TOKEN as the gateway reads it]")
@click.option("--replace-password", is_flag=True,
              help="With --register-gateway: a station the gateway already has gets the board's new OCPP "
                   "password there too (a replaced board; the old one is then refused).")
@click.option("--reset/--no-reset", default=True, show_default=True,
              help="Soft-reset each board afterwards so it starts with its new config.")
@json_option
def provision(ports, sets, inventory_file, stations, old_station, fresh, prompt, dry_run, register_gateway,
              gateway_token, replace_password, reset, as_json, ca_cert, ca_for, client_cert, client_key, client_dir,
              release_key_file, **flags):
    """Write a board's /config.json: Wi-Fi, station id, central system, ThingSpeak, MQTT,
    sensor calibration.

    The config is checked with the firmware's own schema before anything is written,
    merged with what the board already has (unless --fresh), written atomically
    (config.json.tmp, then renamed), read back and compared. Secrets are never printed.

    \b
    One board, from flags (missing settings are asked for in a terminal):
      picocharge provision --station-id CP-1 --ssid shed --ocpp-url ws://gw:9000/ocpp
    A fleet, every connected board in turn (rows pinned by `port`, else the board that
    already holds the station id, else in order):
      picocharge provision --inventory fleet.csv --wifi-password "$WIFI_PW"
      picocharge provision --inventory fleet.toml --only CP-7 -p /dev/ttyACM0
    Values given as flags apply to every inventory row that does not set them.
    """
    if old_station:
        raise click.UsageError("--station is now --only (it picks inventory rows; --station-id sets "
                               "a board's id): --only %s" % " --only ".join(old_station))
    if ca_for and not ca_cert and not inventory_file:
        raise click.UsageError("--ca-for goes with --ca-cert FILE")
    ca_for = ca_for or CA_FOR
    ca = read_ca(ca_cert) if ca_cert else None  # checked before any board is looked at
    if bool(client_cert) != bool(client_key):
        raise click.UsageError("--client-cert and --client-key go together (the certificate and its key)")
    if client_cert and (client_dir or inventory_file):
        raise click.UsageError("--client-cert/--client-key are one station's: for several, use --client-cert-dir "
                               "DIR or the inventory's client-cert and client-key columns")
    client_pair = (client_cert, client_key) if client_cert else None
    if client_pair:
        read_client(*client_pair)  # parses, and the key is the certificate's: before any board is looked at
    release_key = None
    if release_key_file:   # read and checked before any board is looked at
        from .release import read_key

        release_key = read_key(release_key_file)
    try:
        common = _flag_values(flags, sets)
        if release_key:
            common["ota.key"] = release_key
        if inventory_file:
            rows = inventory.load(inventory_file)
        else:
            if stations:
                raise click.UsageError("--only picks rows of an --inventory file; for one board, "
                                       "give its id with --station-id")
            rows = [(common, {}, "the command line")]
    except inventory.InventoryError as e:
        raise click.ClickException(str(e))
    if stations:
        known = [r[0]["station_id"] for r in rows]
        missing = [s for s in stations if s not in known]
        if missing:
            raise click.ClickException("station %s is not in %s (it has: %s)" % (
                ", ".join(missing), inventory_file, ", ".join(known)))
        rows = [r for r in rows if r[0]["station_id"] in stations]

    if ports:
        ports = [device.resolve_port(p) for p in ports]
    else:
        ports = [b["port"] for b in device.boards()]
    if not ports:
        raise click.ClickException(
            "no board found: plug a Pico W in by USB (with MicroPython on it: `picocharge flash`) or "
            "name its port with --port; `picocharge devices` lists what is connected")
    if not inventory_file and len(ports) > 1:
        raise click.ClickException("%d boards connected (%s): each needs its own station id; choose "
                                   "one with --port, or use an --inventory" % (len(ports), ", ".join(ports)))

    # 1. read what the boards hold (nothing is written in this phase)
    surveyed, no_firmware = {}, []
    try:
        for p in ports:
            surveyed[p], has_main = _survey(p)
            if not has_main:
                no_firmware.append(p)
    except device.DeviceError as e:
        raise click.ClickException(str(e))
    if inventory_file:
        pairs, unassigned = _assign(rows, ports, stations, surveyed)
    else:
        pairs, unassigned = [(rows[0], ports[0])], []

    # 2. build and validate every config before anything is written anywhere
    ask = sys.stdin.isatty() if prompt is None else prompt
    plans = []
    for (values, meta, where), port in pairs:
        row_values = {} if not inventory_file else values
        row_ca = ca
        if meta.get("ca-cert"):  # a host file, relative to the inventory
            row_ca = read_ca(Path(inventory_file).parent / meta["ca-cert"],
                             "column ca-cert in %s" % where)
        if row_ca:
            row_values = dict(row_values)
            for uplink in ca_for:
                row_values.setdefault(uplink + ".ca_cert", row_ca[0])
        station_id = inventory.flatten(build(surveyed[port], common, row_values, fresh)).get("station_id") or ""
        files = _client_files(meta, where, inventory_file, client_pair, client_dir, station_id)
        row_client = read_client(files[0], files[1], station_id, files[2]) if files else None
        if row_client:
            row_values = dict(row_values, **{"ocpp.client_cert": row_client["cert_name"],
                                             "ocpp.client_key": row_client["key_name"]})
        cfg = build(surveyed[port], common, row_values, fresh)
        if ask and not inventory_file:
            cfg = _ask(cfg, register=bool(register_gateway))
        if register_gateway and not inventory.flatten(cfg).get("ocpp.password"):
            inventory.set_dotted(cfg, "ocpp.password", secrets.token_hex(16))
        try:
            full = fwconfig.validate(cfg)
        except fwconfig.ConfigError as e:
            flag = [f for f, k in inventory.FLAG_KEYS.items() if k == e.key]
            how = ("--%s or --set %s=..." % (flag[0], e.key)) if flag else "--set %s=..." % e.key
            src = ("column %s in %s" % (e.key, where)) if inventory_file else how
            given = inventory.flatten(build({}, common, row_values))
            if e.key not in given and e.key in inventory.flatten(surveyed[port]) and not fresh:
                src = ("%s (it comes from the board's current config.json; --fresh starts from an "
                       "empty config)" % how)
            if e.key.startswith("ocpp.client_") and row_client:
                src = "the OCPP URL: a client certificate needs a wss:// --ocpp-url"
            raise click.ClickException("config for %s refused, nothing was written to any board: %s; "
                                       "fix %s" % (port, e, src))
        if register_gateway and not full["ocpp"]["url"]:
            raise click.ClickException("--register-gateway: station %s has no ocpp.url; give --ocpp-url "
                                       "(the gateway's ws:// address)" % full["station_id"])
        plans.append((port, cfg, full, row_ca, row_client))

    for port in [p for p, _c, _f, _a, _k in plans if p in no_firmware]:
        click.echo("warning: no firmware on the board at %s (no /main.py): run `picocharge deploy "
                   "-p %s`, or nothing on it uses this config" % (port, port), err=True)

    # the gateway: reachable, token good, no registered station about to get a new password
    if replace_password and not register_gateway:
        raise click.UsageError("--replace-password goes with --register-gateway URL")
    known = (_registrations(register_gateway, gateway_token, plans, surveyed, replace_password)
             if register_gateway else {})

    # 3. write, verify, register
    results = []
    for port, cfg, full, row_ca, row_client in plans:
        entry = {"port": port, "station_id": full["station_id"], "config": fwconfig.redact(cfg),
                 "written": False, "registered": False}
        if row_ca:
            entry["ca_cert"] = {"file": row_ca[0], "subject": row_ca[2], "for": list(ca_for)}
        files = [row_ca[:2]] if row_ca else []
        if row_client:
            entry["client_cert"] = {"file": row_client["cert_name"], "key_file": row_client["key_name"],
                                    "cn": row_client["cn"], "not_after": row_client["not_after"]}
            files += [(row_client["cert_name"], row_client["cert_der"]),
                      (row_client["key_name"], row_client["key_der"])]
        if not dry_run:
            try:
                write_config(port, cfg, reset, files)
            except device.DeviceError as e:
                raise click.ClickException(str(e))
            entry["written"] = True
            if known.get(full["station_id"]) == "new":
                register(register_gateway, full["station_id"], full["ocpp"]["password"], gateway_token)
            elif known.get(full["station_id"]) == "new-password":
                set_password(register_gateway, full["station_id"], full["ocpp"]["password"], gateway_token)
            entry["registered"] = full["station_id"] in known
        results.append(entry)
        if not as_json:
            click.echo("%s %s on %s: %s" % (
                "would write" if dry_run else "provisioned", full["station_id"], port,
                "config.json written and verified" if not dry_run else "config valid"))
            click.echo("  " + _describe(cfg))
            if row_ca:
                click.echo("  CA %s (%s) %s /%s, verifies %s" % (
                    row_ca[2] or "certificate", "%d bytes DER" % len(row_ca[1]),
                    "would be copied to" if dry_run else "copied to", row_ca[0], ", ".join(ca_for)))
            if row_client:
                click.echo("  client certificate CN=%s (valid until %s, %d bytes DER) %s /%s, its key /%s: "
                           "signs in over wss:// without a password (OCPP security profile 3)" % (
                               row_client["cn"], row_client["not_after"], len(row_client["cert_der"]),
                               "would be copied to" if dry_run else "copied to", row_client["cert_name"],
                               row_client["key_name"]))
            if entry["registered"] and known[full["station_id"]] == "registered":
                click.echo("  already registered with the gateway at %s; the board keeps its OCPP "
                           "password" % register_gateway)
            elif entry["registered"] and known[full["station_id"]] == "new-password":
                click.echo("  already registered with the gateway at %s; its password there is now the "
                           "board's new one (***)" % register_gateway)
            elif entry["registered"]:
                click.echo("  registered with the gateway at %s (password ***)" % register_gateway)
    skipped = [r[0]["station_id"] for r in unassigned]
    idle = [p for p in ports if p not in [x[0] for x in plans]]
    if as_json:
        echo_json({"stations": results, "not_connected": skipped, "untouched_ports": idle,
                   "dry_run": dry_run})
    else:
        if skipped:
            click.echo("not provisioned (no board connected for them): %s" % ", ".join(skipped))
        if idle:
            click.echo("boards left untouched (no inventory row for them): %s" % ", ".join(idle))


def _ask(cfg, register=False):
    """Ask in the terminal for what a station usually needs and `cfg` lacks; secrets hidden.
    With --register-gateway the OCPP password is generated, so it is not asked for."""
    flat = inventory.flatten(cfg)
    if not flat.get("station_id"):
        inventory.set_dotted(cfg, "station_id", click.prompt("Station id").strip())
    if not flat.get("wifi.ssid"):
        ssid = click.prompt("Wi-Fi network (SSID, empty for none)", default="", show_default=False)
        if ssid:
            inventory.set_dotted(cfg, "wifi.ssid", ssid)
    flat = inventory.flatten(cfg)
    if flat.get("wifi.ssid") and not flat.get("wifi.password"):
        pw = click.prompt("Wi-Fi password for %s" % flat["wifi.ssid"], hide_input=True,
                          default="", show_default=False)
        if pw:
            inventory.set_dotted(cfg, "wifi.password", pw)
    if not flat.get("ocpp.url"):
        url = click.prompt("Central system URL (ws://..., empty for none)", default="",
                           show_default=False)
        if url:
            inventory.set_dotted(cfg, "ocpp.url", url)
    flat = inventory.flatten(cfg)
    if flat.get("ocpp.url") and not flat.get("ocpp.password") and not register:
        pw = click.prompt("OCPP password (empty for none)", hide_input=True, default="",
                          show_default=False)
        if pw:
            inventory.set_dotted(cfg, "ocpp.password", pw)
    if not flat.get("thingspeak.channel_id"):
        while True:
            ch = click.prompt("ThingSpeak channel id (empty for none)", default="",
                              show_default=False).strip()
            if not ch or ch.isdigit():
                break
            click.echo("a channel id is a whole number, e.g. 1234567", err=True)
        if ch:
            inventory.set_dotted(cfg, "thingspeak.channel_id", int(ch))
            if not flat.get("thingspeak.write_key"):
                key = click.prompt("ThingSpeak write API key", hide_input=True)
                inventory.set_dotted(cfg, "thingspeak.write_key", key.strip())
            if "thingspeak.enabled" not in flat:
                inventory.set_dotted(cfg, "thingspeak.enabled", True)
    if not flat.get("mqtt.host"):
        host = click.prompt("MQTT broker host (empty for none)", default="", show_default=False).strip()
        if host:
            inventory.set_dotted(cfg, "mqtt.host", host)
            if "mqtt.enabled" not in flat:
                inventory.set_dotted(cfg, "mqtt.enabled", True)
    return cfg
