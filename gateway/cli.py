"""`picocharge gateway`: run the gateway (default), add-station, stations, token."""
import asyncio
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

import click

from picocharge.firmware import fields

from . import auth, ca, proxies, releases, store as store_mod
from .store import Store, StoreError, generate_password, is_url, redact


def _option(*names, **kw):
    """click.option that shows its environment variable in --help (docs/gateway.md's table
    lists the same; tests/cli/test_gateway_cli.py compares them)."""
    return click.option(*names, show_envvar=True, **kw)


def _group_db(ctx, param, value):
    """A subcommand's --db, else the one given to `picocharge gateway --db X <command>` (it was
    ignored: `gateway --db X token create` wrote picocharge-gateway.db.tokens)."""
    if value is not None:
        return value
    c = ctx.parent
    while c is not None:        # `gateway --db X token create`: token's parent is gateway
        if c.params.get("db"):
            return c.params["db"]
        c = c.parent
    return "picocharge-gateway.db"


def _db_option(f):
    return _option("--db", "db", default=None, callback=_group_db, envvar="PICOCHARGE_GATEWAY_DB", metavar="PATH|URL",
                   help="The database: a SQLite file (default: picocharge-gateway.db), or PostgreSQL as "
                        "postgresql://USER@HOST:PORT/NAME (password in PGPASSWORD or ~/.pgpass, or in the URL; never "
                        "printed). For a command, the one given as `picocharge gateway --db X <command>`. The "
                        "gateway creates the file or the schema when missing; the commands that only read refuse a "
                        "missing file.")(f)


def _existing_db(db):
    """`db` when it exists; else a ClickException: a command that only reads must not create an
    empty database for a mistyped --db. (A PostgreSQL URL is checked by connecting to it.)"""
    if not is_url(db) and not os.path.exists(db):
        raise click.ClickException(
            "no gateway database at %s: check --db (or PICOCHARGE_GATEWAY_DB); the gateway makes its "
            "database at its first start (`picocharge gateway --db %s`), `picocharge gateway add-station "
            "--db %s` too" % (db, db, db))
    return db


class _SecondsOrKeep(click.ParamType):
    name = "seconds"

    def convert(self, value, param, ctx):
        if value is None or value == "keep":
            return None
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = -1
        if not 0 <= n <= 86400:
            self.fail("%r: give seconds 0..86400, or keep" % (value,), param, ctx)
        return n


_SECONDS_OR_KEEP = _SecondsOrKeep()


@click.group(invoke_without_command=True)
@_option("--host", default="127.0.0.1", show_default=True, envvar="PICOCHARGE_GATEWAY_HOST",
              help="Address to listen on.")
@_option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535),
              envvar="PICOCHARGE_GATEWAY_PORT",
              help="One port for ws://HOST:PORT/ocpp/<id>, the dashboard, /api, /metrics, /update (0: any free).")
@_db_option
@_option("--auth", type=click.Choice(["password", "pending", "none"]), default="password",
              show_default=True, envvar="PICOCHARGE_GATEWAY_AUTH",
              help="password: known stations with their password; pending: unknown stations wait for an "
                   "operator; none: accept any station (demos and benchmarks).")
@_option("--mqtt", "mqtt_url", metavar="URL", envvar="PICOCHARGE_GATEWAY_MQTT",
              help="Re-publish to mqtt://[user:pass@]host:port[/prefix] (or mqtts://).")
@_option("--mqtt-ingest/--no-mqtt-ingest", default=True, show_default=True,
              envvar="PICOCHARGE_GATEWAY_MQTT_INGEST",
              help="Also store telemetry that boards publish on <prefix>/<id>/telemetry.")
@_option("--thingspeak-url", default="https://api.thingspeak.com", show_default=True, metavar="URL",
              envvar="PICOCHARGE_GATEWAY_THINGSPEAK_URL",
              help="ThingSpeak base URL (uploads only for stations with a channel and write key).")
@_option("--thingspeak-interval", type=click.FloatRange(0.0), default=15.0, show_default=True,
              metavar="SECONDS", envvar="PICOCHARGE_GATEWAY_THINGSPEAK_INTERVAL",
              help="Minimum time between writes to one channel (15 free licence, 1 paid).")
@_option("--thingspeak-bulk-limit", type=click.IntRange(1, 14400), default=960, show_default=True,
              envvar="PICOCHARGE_GATEWAY_THINGSPEAK_BULK_LIMIT",
              help="Entries per bulk write (960 free licence, 14400 paid).")
@_option("--retention-days", type=click.FloatRange(0.0), default=30.0, show_default=True,
              envvar="PICOCHARGE_GATEWAY_RETENTION_DAYS",
              help="Keep readings, status history, connections and finished transactions this long "
                   "(0: forever).")
@_option("--api-auth", type=click.Choice(["token", "none"]), default="token", show_default=True,
              envvar="PICOCHARGE_GATEWAY_API_AUTH",
              help="token: every /api call and /metrics need a token (`picocharge gateway token create`) or a "
                   "dashboard session; none: the API is open to anyone who reaches the port, writes included "
                   "(demos and benchmarks only; logged as a warning).")
@_option("--api-token", envvar="PICOCHARGE_GATEWAY_API_TOKEN", metavar="SECRET",
              help="One more admin token, given in clear (scripts, the demo); tokens made with "
                   "`picocharge gateway token create` are kept hashed and are preferred.")
@_option("--allowed-hosts", envvar="PICOCHARGE_GATEWAY_ALLOWED_HOSTS", metavar="NAMES", default="",
              help="Comma-separated Host names the dashboard and API answer to besides localhost, 127.0.0.1, "
                   "::1 and --host ('*': any, which lets DNS rebinding in). Stations (/ocpp/) and /update "
                   "are served under any name.")
@_option("--max-connections", type=click.IntRange(1), default=20000, show_default=True,
              envvar="PICOCHARGE_GATEWAY_MAX_CONNECTIONS",
              help="Open connections (stations and HTTP) at most; the next is answered 503. Keep it below "
                   "`ulimit -n`.")
@_option("--max-body", type=click.IntRange(1024), default=1024 * 1024, show_default=True, metavar="BYTES",
              envvar="PICOCHARGE_GATEWAY_MAX_BODY", help="Request body size at most (413 past it).")
@_option("--idle-timeout", type=click.FloatRange(0.1), default=30.0, show_default=True, metavar="SECONDS",
              envvar="PICOCHARGE_GATEWAY_IDLE_TIMEOUT",
              help="An HTTP connection with no request in progress (idle, or half a request head) is closed "
                   "after this long.")
@_option("--body-timeout", type=click.FloatRange(0.1), default=10.0, show_default=True, metavar="SECONDS",
              envvar="PICOCHARGE_GATEWAY_BODY_TIMEOUT", help="A request body must arrive within this (408).")
@_option("--auth-fail-limit", type=click.IntRange(0), default=10, show_default=True,
              envvar="PICOCHARGE_GATEWAY_AUTH_FAIL_LIMIT",
              help="Failed credentials (API tokens, station passwords) per API client address and per station "
                   "id in a minute (ten times as many per station address) before further tries are refused "
                   "(429) until the minute has passed (0: no limit).")
@_option("--max-pending", type=click.IntRange(0), default=100, show_default=True,
              envvar="PICOCHARGE_GATEWAY_MAX_PENDING",
              help="--auth pending: unknown stations waiting for an operator at most (the next is refused).")
@_option("--tls-cert", type=click.Path(dir_okay=False), metavar="PEM", envvar="PICOCHARGE_GATEWAY_TLS_CERT",
              help="Serve wss:// and https:// with this certificate (chain), OCPP security profile 2.")
@_option("--tls-key", type=click.Path(dir_okay=False), metavar="PEM", envvar="PICOCHARGE_GATEWAY_TLS_KEY",
              help="The certificate's private key (when it is not in the --tls-cert file).")
@_option("--client-ca", type=click.Path(dir_okay=False), metavar="PEM", envvar="PICOCHARGE_GATEWAY_CLIENT_CA",
              help="The operator CA (`picocharge gateway ca init`): a station presenting a certificate it signed, "
                   "with the station id as CN, connects without a password (OCPP security profile 3). Needs "
                   "--tls-cert.")
@_option("--client-cert", type=click.Choice(["optional", "required"]), default="optional", show_default=True,
              envvar="PICOCHARGE_GATEWAY_CLIENT_CERT",
              help="With --client-ca: optional lets stations without a certificate use their password "
                   "(profiles 1, 2); required refuses them (401). The dashboard and API never need one.")
@_option("--client-crl", type=click.Path(dir_okay=False), metavar="PEM", envvar="PICOCHARGE_GATEWAY_CLIENT_CRL",
         help="With --client-ca: the CA's revocation list (`picocharge gateway ca revoke` writes DIR/ca.crl); a "
              "station whose certificate it lists is refused (401). Read again when the file changes.")
@_option("--trusted-proxy", "trusted_proxy", multiple=True, metavar="CIDR", envvar="PICOCHARGE_GATEWAY_TRUSTED_PROXY",
         help="A load balancer's address or network (repeatable, or comma-separated): from it, X-Forwarded-For "
              "names the client, for the sign-in limits and the logs (docs/deploy.md). From anyone else the "
              "header is ignored.")
@_option("--heartbeat-interval", type=click.IntRange(1, 86400), default=300, show_default=True,
              envvar="PICOCHARGE_GATEWAY_HEARTBEAT_INTERVAL", help="Heartbeat interval given at boot.")
@_option("--clock-aligned-interval", type=_SECONDS_OR_KEEP, default="900", show_default=True,
         metavar="SECONDS|keep", envvar="PICOCHARGE_GATEWAY_CLOCK_ALIGNED_INTERVAL",
         help="ClockAlignedDataInterval each station is given at its boot when its own differs: an idle "
              "station then reports its meter and enclosure every so often (0: no clock-aligned data; keep: "
              "leave the stations' own setting).")
@_option("--local-list-sync/--no-local-list-sync", default=False, show_default=True,
         envvar="PICOCHARGE_GATEWAY_LOCAL_LIST_SYNC",
         help="Keep every station's Local Authorization List in step with the id tags (SendLocalList), "
              "except stations switched off one by one (PUT /api/stations/<id>/local-list).")
@_option("--response-timeout", type=click.FloatRange(1.0, 600.0), default=30.0, show_default=True,
         metavar="SECONDS", envvar="PICOCHARGE_GATEWAY_RESPONSE_TIMEOUT",
         help="Seconds a station has to answer a command (the API answers 504 after it).")
@_option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
         envvar="PICOCHARGE_GATEWAY_WORKERS",
         help="Gateway processes on this host, sharing --port (SO_REUSEPORT); more than 1 needs a postgresql:// "
              "--db (docs/scale-out.md).")
@click.option("--reuse-port", is_flag=True, hidden=True)    # a worker of --workers N (workers.py)
@_option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, envvar="PICOCHARGE_GATEWAY_LOG_LEVEL")
@click.pass_context
def gateway(ctx, host, port, db, auth, mqtt_url, mqtt_ingest, thingspeak_url, thingspeak_interval,
            thingspeak_bulk_limit, retention_days, api_auth, api_token, allowed_hosts, max_connections, max_body,
            idle_timeout, body_timeout, auth_fail_limit, max_pending, tls_cert, tls_key, client_ca, client_cert,
            client_crl, trusted_proxy, heartbeat_interval, clock_aligned_interval, local_list_sync,
            response_timeout, workers, reuse_port, log_level):
    """Run the OCPP 1.6J gateway in the foreground (Ctrl-C stops it), or manage its stations.

    Stations connect to ws://HOST:PORT/ocpp/<station-id>; the dashboard is at http://HOST:PORT/.
    """
    if ctx.invoked_subcommand is not None:
        return
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .app import Settings
    from .uplinks import parse_mqtt_url
    if mqtt_url:
        try:
            parse_mqtt_url(mqtt_url)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--mqtt")
    try:
        trusted = proxies.networks(trusted_proxy)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--trusted-proxy")
    if workers > 1:
        if not is_url(db):
            raise click.BadParameter("%d workers need a database they can share: give --db postgresql://USER@HOST:"
                                     "PORT/NAME (a SQLite file admits one gateway process; see docs/scale-out.md)"
                                     % workers, param_hint="--workers")
        from .workers import Supervisor, worker_argv
        argv = sys.argv[1:]
        if "gateway" not in argv:
            raise click.ClickException("--workers runs `picocharge gateway` again for each worker: start it "
                                       "from the command line")
        ctx.exit(Supervisor(workers, worker_argv(argv), host, port, echo=click.echo).run())
    settings = Settings(host=host, port=port, db=db, auth=auth, mqtt_url=mqtt_url, mqtt_ingest=mqtt_ingest,
                        thingspeak_url=thingspeak_url or None, thingspeak_interval=thingspeak_interval,
                        thingspeak_bulk_limit=thingspeak_bulk_limit, retention_days=retention_days,
                        api_token=api_token, heartbeat_interval=heartbeat_interval,
                        tls_cert=tls_cert, tls_key=tls_key, client_ca=client_ca, client_cert=client_cert,
                        client_crl=client_crl, api_auth=api_auth,
                        allowed_hosts=tuple(h for h in allowed_hosts.split(",") if h.strip()),
                        max_connections=max_connections, max_body=max_body, idle_timeout=idle_timeout,
                        body_timeout=body_timeout, auth_fail_limit=auth_fail_limit, max_pending=max_pending,
                        clock_aligned_interval=clock_aligned_interval, local_list_sync=local_list_sync,
                        trusted_proxies=trusted, response_timeout=response_timeout, reuse_port=reuse_port)
    try:
        _run(_serve(settings))
    except (StoreError, ValueError) as e:   # ValueError: the TLS certificate or key, named
        raise click.ClickException(str(e))
    except OSError as e:
        raise click.ClickException("cannot listen on %s:%d (%s): pick another --port or stop what uses it"
                                   % (host, port, e.strerror or e))


def _run(coro):
    """asyncio.run, on uvloop where it is installed: it reads every socket into one loop-wide
    buffer (see server.py), and answers more frames per second of CPU."""
    try:
        import uvloop
    except ImportError:
        logging.getLogger(__name__).warning(
            "uvloop is not installed: running on asyncio's own loop, which allocates 256 KiB per socket "
            "read; with thousands of stations glibc's heap then grows by MBs a minute "
            "(docs/performance.md, 'The edge on aiohttp'): pip install uvloop")
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _serve(settings):
    from .app import Gateway
    gw = Gateway(settings)
    await gw.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = settings.host if ":" not in settings.host else "[%s]" % settings.host
    click.echo("gateway listening on %s://%s:%d" % (settings.scheme, host, gw.port))
    if gw.first_token:
        click.echo("admin API token (shown once, kept hashed in %s): %s" % (gw.tokens.path, gw.first_token))
        click.echo("dashboard sign-in: %s://%s:%d/#token=%s" % (settings.scheme, host, gw.port, gw.first_token))
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await gw.stop()
    click.echo("gateway stopped")


@gateway.command("add-station")
@click.argument("station_id")
@_option("--password", metavar="PW", envvar="PICOCHARGE_STATION_PASSWORD",
         help="OCPP password, 16..40 printable ASCII characters (generated and printed once when left "
              "out). On the command line it shows in ps and the shell history: prefer the environment "
              "variable.")
@click.option("--thingspeak-channel", type=click.IntRange(1), metavar="N", help="ThingSpeak channel id.")
@click.option("--thingspeak-key", metavar="KEY", help="ThingSpeak write key of that channel.")
@click.option("--thingspeak-read-key", metavar="KEY",
              help="Read API key of that channel, if it is private (ThingSpeak's default): the gateway "
                   "reads the channel back after a restart so as not to upload twice.")
@click.option("--pending", is_flag=True, help="Register as pending (an operator accepts it later).")
@_db_option
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (for scripts): id, state, thingspeak_channel, and password when generated.")
def add_station(station_id, password, thingspeak_channel, thingspeak_key, thingspeak_read_key, pending, db,
                as_json):
    """Register STATION_ID (restart a running gateway, or use POST /api/stations, to pick it up)."""
    from .api import _api_key
    why = fields.station_id_error(station_id)
    if why:
        raise click.BadParameter(why, param_hint="STATION_ID")
    if (thingspeak_channel is None) != (thingspeak_key is None):
        raise click.UsageError("give --thingspeak-channel and --thingspeak-key together")
    if thingspeak_read_key is not None and thingspeak_channel is None:
        raise click.UsageError("--thingspeak-read-key goes with --thingspeak-channel and --thingspeak-key")
    for opt, key in (("--thingspeak-key", thingspeak_key), ("--thingspeak-read-key", thingspeak_read_key)):
        if key is not None and not _api_key(key):
            raise click.BadParameter("the channel's API key: 1..64 printable characters, no spaces",
                                     param_hint=opt)
    if password is not None and auth.password_problem(password):
        raise click.BadParameter(auth.PASSWORD_RULE + " (OCPP 1.6 security whitepaper: 16 bytes at least)",
                                 param_hint="--password (or PICOCHARGE_STATION_PASSWORD)")
    generated = password is None
    if generated:
        password = generate_password()
    store = Store(db)
    try:
        store.add_station_sync(station_id, password, "pending" if pending else "accepted",
                               thingspeak_channel, thingspeak_key, thingspeak_read_key)
    except KeyError:
        raise click.ClickException("station %s is already in %s" % (station_id, redact(db)))
    except StoreError as e:
        raise click.ClickException(str(e))
    if as_json:
        out = {"id": station_id, "state": "pending" if pending else "accepted",
               "thingspeak_channel": thingspeak_channel, "db": redact(db)}
        if generated:
            out["password"] = password      # shown once: the database keeps only its hash
        click.echo(json.dumps(out, indent=2))
        return
    click.echo("station %s added to %s" % (station_id, redact(db)))
    if generated:
        click.echo("password: %s  (shown once: configure it on the station as ocpp.password)" % password)


@gateway.command("remove-station")
@click.argument("station_id")
@_db_option
def remove_station(station_id, db):
    """Remove STATION_ID from the database: its password and ThingSpeak channel go, its readings,
    transactions and history stay. A running gateway keeps it until restarted: use
    DELETE /api/stations/STATION_ID on a running one, which also closes its connection."""
    _existing_db(db)     # nothing to remove from a database that is not there (and none to create)
    try:
        gone = Store(db).remove_station_sync(station_id)
    except StoreError as e:
        raise click.ClickException(str(e))
    if not gone:
        raise click.ClickException("no station %s in %s (list them with `picocharge gateway stations --db %s`)"
                                   % (station_id, redact(db), redact(db)))
    click.echo("station %s removed from %s (its readings stay)" % (station_id, redact(db)))


@gateway.command("stations")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def stations(db, as_json):
    """List the registered stations (never their passwords or keys)."""
    _existing_db(db)
    try:
        rows = Store(db).stations_sync()
    except StoreError as e:
        raise click.ClickException(str(e))
    out = [{"id": r["id"], "state": r["state"], "status": r["status"], "vendor": r["vendor"],
            "model": r["model"], "last_seen": r["last_seen"], "thingspeak_channel": r["ts_channel"],
            "has_password": bool(r["pw_hash"])} for r in rows]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if not out:
        click.echo("no stations in %s: add one with `picocharge gateway add-station ID`" % redact(db))
        return
    click.echo("%-20s %-9s %-14s %-20s %s" % ("station", "state", "status", "last seen", "thingspeak"))
    for r in out:
        click.echo("%-20s %-9s %-14s %-20s %s" % (r["id"], r["state"], r["status"] or "-",
                                                 r["last_seen"] or "-", r["thingspeak_channel"] or "-"))


@gateway.group("token")
def token():
    """API tokens: create, list, revoke (they are kept hashed in <db>.tokens, mode 0600)."""


def _tokens(db, tokens_file):
    return auth.TokenStore(tokens_file or auth.tokens_path(db))


def _tokens_file_option(f):
    return _option("--tokens-file", metavar="PATH", envvar="PICOCHARGE_GATEWAY_TOKENS_FILE",
                   help="The token file (default: the database's path + .tokens; for a PostgreSQL URL, "
                        "~/.local/share/picocharge/<database name>.tokens, $XDG_DATA_HOME if set).")(f)


@token.command("create")
@click.option("--role", type=click.Choice(auth.ROLES), default="read", show_default=True,
              help="read: GET calls and /metrics; operate: also accept/reject, id tags and commands to "
                   "stations; admin: also register, remove and re-key stations.")
@click.option("--name", metavar="NAME", help="What the token is for (shown by `token list`).")
@_db_option
@_tokens_file_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def token_create(role, name, db, tokens_file, as_json):
    """Make a token; it is printed once and kept only as its hash. A running gateway takes it at once."""
    try:
        tok, row = _tokens(db, tokens_file).create(role, name)
    except (OSError, ValueError) as e:
        raise click.ClickException(str(e))
    row = {k: v for k, v in row.items() if k != "sha256"}
    if as_json:
        click.echo(json.dumps(dict(row, token=tok), indent=2))
        return
    click.echo("token %s (%s, role %s): %s" % (row["id"], row["name"], row["role"], tok))
    click.echo("shown once: send it as Authorization: Bearer <token>, or sign in with it on the dashboard")


@token.command("list")
@_db_option
@_tokens_file_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def token_list(db, tokens_file, as_json):
    """List the tokens (never the tokens themselves: only their id, name, role and date)."""
    store = _tokens(db, tokens_file)
    if not os.path.exists(store.path):
        raise click.ClickException(
            "no token file at %s: check --db (or PICOCHARGE_GATEWAY_DB) and --tokens-file; the gateway "
            "makes it at its first start, `picocharge gateway token create` too" % store.path)
    try:
        rows = [{k: v for k, v in r.items() if k != "sha256"} for r in store.rows()]
    except ValueError as e:
        raise click.ClickException(str(e))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no tokens: the gateway makes an admin token at its first start, or `picocharge gateway "
                   "token create --role admin`")
        return
    click.echo("%-6s %-8s %-21s %s" % ("id", "role", "created", "name"))
    for r in rows:
        click.echo("%-6s %-8s %-21s %s" % (r["id"], r["role"], r["created"], r["name"]))


@token.command("revoke")
@click.argument("token_id")
@_db_option
@_tokens_file_option
def token_revoke(token_id, db, tokens_file):
    """Revoke the token TOKEN_ID (its id or name, from `token list`); a running gateway refuses it at once."""
    try:
        gone = _tokens(db, tokens_file).revoke(token_id)
    except (OSError, ValueError) as e:
        raise click.ClickException(str(e))
    if not gone:
        raise click.ClickException("no token %s (see `picocharge gateway token list`)" % token_id)
    click.echo("token %s revoked" % token_id)


@gateway.group("release")
def release():
    """Firmware releases the gateway serves to its stations (docs/ota.md): add, list, remove."""


def _release_db(db):
    """An open database connection (the schema made); ClickException when it cannot be used."""
    try:
        return Store(db).open()
    except StoreError as e:
        raise click.ClickException(str(e))


@release.command("add")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--key-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="The fleet release key (64 hex digits, `picocharge release key`): manifest.sig is checked "
                   "against it too. The gateway itself never needs the key.")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the release as JSON (for scripts).")
def release_add(folder, key_file, db, as_json):
    """Check the release bundle FOLDER (manifest.json, manifest.sig, the files) against its manifest and
    store it beside the database; a running gateway serves it at once."""
    try:
        key = releases.read_key_file(key_file) if key_file else None
        files = releases.read_folder(folder)
        manifest = releases.check_bundle(files, key)
    except releases.BundleError as e:
        raise click.ClickException("release refused: %s" % e)
    conn = _release_db(db)
    try:
        if store_mod.release_rows(conn, manifest["version"]):
            raise click.ClickException("release %s is already in %s: remove it first (`picocharge gateway release "
                                       "remove %s`)" % (manifest["version"], db, manifest["version"]))
        try:
            row = releases.store_files(db, files, manifest)
        except FileExistsError:
            raise click.ClickException("a folder for release %s is already in %s: remove it first"
                                       % (manifest["version"], releases.releases_dir(db)))
        conn.execute("BEGIN")
        store_mod.add_release(conn, row)
        conn.execute("COMMIT")
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(releases.view(row), indent=2))
        return
    click.echo("release %s added to %s (%d files, %d bytes, signed with key %s%s)" % (
        row["version"], releases.releases_dir(db), row["files"], row["size"], row["key_id"],
        ", signature checked" if key else ""))


@release.command("list")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def release_list(db, as_json):
    """List the releases stored beside the database."""
    _existing_db(db)
    conn = _release_db(db)
    try:
        rows = [releases.view(r) for r in store_mod.release_rows(conn)]
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no releases in %s: add one with `picocharge gateway release add FOLDER`" % db)
        return
    click.echo("%-16s %-8s %5s %8s %-8s %s" % ("version", "board", "files", "bytes", "key", "added"))
    for r in rows:
        click.echo("%-16s %-8s %5d %8d %-8s %s" % (r["version"], r["board"] or "-", r["files"], r["size"],
                                                  r["key_id"], r["added_at"]))


@release.command("remove")
@click.argument("version")
@_db_option
def release_remove(version, db):
    """Remove release VERSION (its files and its index row)."""
    _existing_db(db)
    conn = _release_db(db)
    try:
        busy = store_mod.rollouts_using(conn, version)
        if busy:
            raise click.ClickException("release %s is being rolled out (rollout %s): cancel it first (POST "
                                       "/api/rollouts/%d/cancel)" % (version, ", ".join(map(str, busy)), busy[0]))
        conn.execute("BEGIN")
        gone = store_mod.remove_release(conn, version)
        conn.execute("COMMIT")
    finally:
        conn.close()
    files = releases.delete_files(db, version)
    if not gone and not files:
        raise click.ClickException("no release %s in %s (see `picocharge gateway release list`)" % (version, db))
    click.echo("release %s removed" % version)


@gateway.command("configure")
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--all", "to_all", is_flag=True, help="Every registered station (the connected ones are sent it now).")
@click.option("--station", "station_ids", multiple=True, metavar="ID", help="This station (repeatable).")
@_option("--url", default="http://127.0.0.1:9000", show_default=True, envvar="PICOCHARGE_GATEWAY_URL",
         help="The running gateway.")
@_option("--token", envvar="PICOCHARGE_GATEWAY_API_TOKEN", metavar="TOKEN",
         help="An API token with the operate role (on the command line it shows in ps: prefer the "
              "environment variable).")
@click.option("--json", "as_json", is_flag=True, help="Print the gateway's answers as JSON (for scripts).")
def configure(settings, to_all, station_ids, url, token, as_json):
    """Change OCPP configuration keys (ChangeConfiguration) of one, several or all stations of a
    running gateway, e.g. `configure --all ClockAlignedDataInterval=900`. Exit 1 when a station
    did not accept (not connected, refused, no answer)."""
    if to_all == bool(station_ids):
        raise click.UsageError("give --all or --station ID (one or more)")
    pairs = []
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter("%r: write KEY=VALUE, e.g. ClockAlignedDataInterval=900" % item,
                                     param_hint="KEY=VALUE")
        pairs.append((key, value))
    answers, ok = [], True
    for key, value in pairs:
        if to_all:
            out = _api(url, token, "POST", "/api/stations/-/configuration", {"key": key, "value": value})
            per = out["stations"]
        else:
            per = {}
            for sid in station_ids:
                try:
                    per[sid] = _api(url, token, "POST", "/api/stations/%s/change-configuration"
                                    % urllib.parse.quote(sid, safe=""), {"key": key, "value": value})
                except _Refused as e:
                    per[sid] = {"error": e.message}
            out = {"key": key, "value": value, "stations": per}
        answers.append(out)
        for sid, r in sorted(per.items()):
            good = r.get("status") in ("Accepted", "RebootRequired")
            ok = ok and good
            if not as_json:
                click.echo("%-20s %s=%s: %s" % (sid, key, value, r.get("status") or r.get("error")))
        if not per and not as_json:
            click.echo("no stations registered")
    if as_json:
        click.echo(json.dumps(answers if len(answers) > 1 else answers[0], indent=2))
    if not ok:
        sys.exit(1)


class _Refused(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


def _api(url, token, method, path, body):
    """The JSON answer of the gateway's API; _Refused with its error for a 4xx/5xx answer about a
    station, ClickException when the gateway cannot be used at all."""
    req = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode(), method=method,
                                 headers=dict({"Content-Type": "application/json"},
                                              **({"Authorization": "Bearer " + token} if token else {})))
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read(1 << 24))
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read(1 << 16)).get("error") or e.reason
        except ValueError:
            why = e.reason
        if e.code in (401, 403):
            raise click.ClickException("the gateway at %s refused the token (%d: %s): give an operate or admin "
                                       "token with --token or PICOCHARGE_GATEWAY_API_TOKEN" % (url, e.code, why))
        if e.code in (400, 404, 409, 502, 504) and "/-/" not in path:
            raise _Refused(why)
        raise click.ClickException("the gateway at %s answered %d: %s" % (url, e.code, why))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise click.ClickException("cannot reach the gateway at %s (%s): is it running? give its address "
                                   "with --url or PICOCHARGE_GATEWAY_URL" % (url, getattr(e, "reason", e)))


@gateway.group("ca")
def ca_group():
    """The operator CA for OCPP security profile 3: stations authenticate with a certificate it
    issued (run the gateway with --client-ca DIR/ca.crt), made with the openssl command."""


def _ca_dir_option(f):
    return click.option("--dir", "folder", default="picocharge-ca", show_default=True, metavar="DIR",
                        envvar="PICOCHARGE_GATEWAY_CA_DIR",
                        help="The CA's folder (ca.crt, ca.key). [env: PICOCHARGE_GATEWAY_CA_DIR]")(f)


@ca_group.command("init")
@_ca_dir_option
@click.option("--name", default="PicoCharge operator CA", show_default=True, help="The CA's common name.")
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True, help="Validity.")
@click.option("--force", is_flag=True, help="Replace an existing CA (every certificate it issued stops working).")
def ca_init(folder, name, days, force):
    """Make the operator CA: DIR/ca.crt (give it to the gateway as --client-ca) and DIR/ca.key
    (keep it offline if you can: whoever has it can make station certificates). Mode 0600."""
    try:
        crt, key = ca.init(folder, name, days, force)
    except ca.CaError as e:
        raise click.ClickException(str(e))
    click.echo("CA certificate: %s (the gateway's --client-ca)" % crt)
    click.echo("CA key:         %s (secret: it issues station certificates)" % key)
    click.echo("revocation list: %s (the gateway's --client-crl; `ca revoke` adds to it)" % crt.with_name(ca.CA_CRL))


@ca_group.command("issue")
@click.argument("station_id")
@_ca_dir_option
@click.option("--out", metavar="DIR", help="Where <STATION_ID>.crt and .key go (default: the CA's folder); "
                                            "`picocharge provision --client-cert-dir DIR` takes them from there.")
@click.option("--days", type=click.IntRange(1, 36500), default=825, show_default=True, help="Validity.")
@click.option("--force", is_flag=True, help="Replace the station's existing certificate and key.")
def ca_issue(station_id, folder, out, days, force):
    """Issue STATION_ID a client certificate (CN = STATION_ID) and its key, signed by the CA.
    Mode 0600; put them on the board with `picocharge provision --client-cert ... --client-key ...`."""
    try:
        crt, key = ca.issue(folder, station_id, out, days, force)
    except ca.CaError as e:
        raise click.ClickException(str(e))
    click.echo("station %s: certificate %s, key %s" % (station_id, crt, key))


@ca_group.command("revoke")
@click.argument("station_id", required=False)
@_ca_dir_option
@click.option("--cert", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="The certificate to revoke (default: DIR/<STATION_ID>.crt).")
def ca_revoke(station_id, folder, cert):
    """Revoke STATION_ID's certificate (a stolen or retired board) and write the CA's revocation
    list DIR/ca.crl anew. A gateway run with --client-crl DIR/ca.crl refuses it from the next
    connection on; issue the station a new one with `ca issue STATION_ID --force`."""
    if not station_id and not cert:
        raise click.UsageError("give the STATION_ID whose certificate to revoke, or --cert FILE")
    try:
        serial, crl = ca.revoke(folder, station_id, cert)
    except ca.CaError as e:
        raise click.ClickException(str(e))
    click.echo("revoked certificate serial %s; revocation list: %s (the gateway's --client-crl)" % (serial, crl))
