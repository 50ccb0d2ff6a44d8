"""`picocharge gateway`: run the gateway (default), add-station, stations."""
import asyncio
import json
import logging
import signal
import sys

import click

from .store import Store, StoreError, generate_password


def _db_option(f):
    return click.option("--db", "db", default="picocharge-gateway.db", show_default=True,
                        envvar="PICOCHARGE_GATEWAY_DB", metavar="PATH",
                        help="SQLite database (created when missing). [env: PICOCHARGE_GATEWAY_DB]")(f)


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="PICOCHARGE_GATEWAY_HOST",
              help="Address to listen on.")
@click.option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535),
              envvar="PICOCHARGE_GATEWAY_PORT",
              help="One port for ws://HOST:PORT/ocpp/<id>, the dashboard, /api, /metrics, /update (0: any free).")
@_db_option
@click.option("--auth", type=click.Choice(["password", "pending", "none"]), default="password",
              show_default=True, envvar="PICOCHARGE_GATEWAY_AUTH",
              help="password: known stations with their password; pending: unknown stations wait for an "
                   "operator; none: accept any station (demos and benchmarks).")
@click.option("--mqtt", "mqtt_url", metavar="URL", envvar="PICOCHARGE_GATEWAY_MQTT",
              help="Re-publish to mqtt://[user:pass@]host:port[/prefix] (or mqtts://).")
@click.option("--mqtt-ingest/--no-mqtt-ingest", default=True, show_default=True,
              envvar="PICOCHARGE_GATEWAY_MQTT_INGEST",
              help="Also store telemetry that boards publish on <prefix>/<id>/telemetry.")
@click.option("--thingspeak-url", default="https://api.thingspeak.com", show_default=True, metavar="URL",
              envvar="PICOCHARGE_GATEWAY_THINGSPEAK_URL",
              help="ThingSpeak base URL (uploads only for stations with a channel and write key).")
@click.option("--thingspeak-interval", type=click.FloatRange(0.0), default=15.0, show_default=True,
              metavar="SECONDS", envvar="PICOCHARGE_GATEWAY_THINGSPEAK_INTERVAL",
              help="Minimum time between writes to one channel (15 free licence, 1 paid).")
@click.option("--thingspeak-bulk-limit", type=click.IntRange(1, 14400), default=960, show_default=True,
              envvar="PICOCHARGE_GATEWAY_THINGSPEAK_BULK_LIMIT",
              help="Entries per bulk write (960 free licence, 14400 paid).")
@click.option("--retention-days", type=click.FloatRange(0.0), default=30.0, show_default=True,
              envvar="PICOCHARGE_GATEWAY_RETENTION_DAYS",
              help="Keep readings, status history, connections and finished transactions this long "
                   "(0: forever).")
@click.option("--api-token", envvar="PICOCHARGE_GATEWAY_API_TOKEN", metavar="SECRET",
              help="Bearer token required for API write calls (and reads from other hosts).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), metavar="PEM", envvar="PICOCHARGE_GATEWAY_TLS_CERT",
              help="Serve wss:// and https:// with this certificate (chain), OCPP security profile 2.")
@click.option("--tls-key", type=click.Path(dir_okay=False), metavar="PEM", envvar="PICOCHARGE_GATEWAY_TLS_KEY",
              help="The certificate's private key (when it is not in the --tls-cert file).")
@click.option("--heartbeat-interval", type=click.IntRange(1, 86400), default=300, show_default=True,
              envvar="PICOCHARGE_GATEWAY_HEARTBEAT_INTERVAL", help="Heartbeat interval given at boot.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, envvar="PICOCHARGE_GATEWAY_LOG_LEVEL")
@click.pass_context
def gateway(ctx, host, port, db, auth, mqtt_url, mqtt_ingest, thingspeak_url, thingspeak_interval,
            thingspeak_bulk_limit, retention_days, api_token, tls_cert, tls_key, heartbeat_interval, log_level):
    """Run the OCPP 1.6J gateway in the foreground (Ctrl-C stops it), or manage its stations.

    Stations connect to ws://HOST:PORT/ocpp/<station-id>; the dashboard is at http://HOST:PORT/.
    """
    if ctx.invoked_subcommand is not None:
        return
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .app import Gateway, Settings
    from .uplinks import parse_mqtt_url
    if not api_token and host not in ("127.0.0.1", "::1", "localhost"):
        logging.getLogger(__name__).warning(
            "no --api-token: anyone who reaches %s:%d can register stations and send them commands "
            "through /api", host, port)
    if mqtt_url:
        try:
            parse_mqtt_url(mqtt_url)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--mqtt")
    settings = Settings(host=host, port=port, db=db, auth=auth, mqtt_url=mqtt_url, mqtt_ingest=mqtt_ingest,
                        thingspeak_url=thingspeak_url or None, thingspeak_interval=thingspeak_interval,
                        thingspeak_bulk_limit=thingspeak_bulk_limit, retention_days=retention_days,
                        api_token=api_token, heartbeat_interval=heartbeat_interval,
                        tls_cert=tls_cert, tls_key=tls_key)
    try:
        asyncio.run(_serve(settings))
    except (StoreError, ValueError) as e:   # ValueError: the TLS certificate or key, named
        raise click.ClickException(str(e))
    except OSError as e:
        raise click.ClickException("cannot listen on %s:%d (%s): pick another --port or stop what uses it"
                                   % (host, port, e.strerror or e))


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
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await gw.stop()
    click.echo("gateway stopped")


@gateway.command("add-station")
@click.argument("station_id")
@click.option("--password", metavar="PW", envvar="PICOCHARGE_STATION_PASSWORD",
              help="OCPP password (generated and printed once when left out). On the command line it "
                   "shows in ps and the shell history: prefer the environment variable. "
                   "[env: PICOCHARGE_STATION_PASSWORD]")
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
    from .api import _STATION_ID, _api_key
    if not _STATION_ID.match(station_id):
        raise click.BadParameter("use 1..64 characters of A-Z a-z 0-9 . _ : -", param_hint="STATION_ID")
    if (thingspeak_channel is None) != (thingspeak_key is None):
        raise click.UsageError("give --thingspeak-channel and --thingspeak-key together")
    if thingspeak_read_key is not None and thingspeak_channel is None:
        raise click.UsageError("--thingspeak-read-key goes with --thingspeak-channel and --thingspeak-key")
    for opt, key in (("--thingspeak-key", thingspeak_key), ("--thingspeak-read-key", thingspeak_read_key)):
        if key is not None and not _api_key(key):
            raise click.BadParameter("the channel's API key: 1..64 printable characters, no spaces",
                                     param_hint=opt)
    if password is not None and not 8 <= len(password) <= 40:
        raise click.BadParameter("8..40 characters", param_hint="--password (or PICOCHARGE_STATION_PASSWORD)")
    generated = password is None
    if generated:
        password = generate_password()
    store = Store(db)
    try:
        store.add_station_sync(station_id, password, "pending" if pending else "accepted",
                               thingspeak_channel, thingspeak_key, thingspeak_read_key)
    except KeyError:
        raise click.ClickException("station %s is already in %s" % (station_id, db))
    except StoreError as e:
        raise click.ClickException(str(e))
    if as_json:
        out = {"id": station_id, "state": "pending" if pending else "accepted",
               "thingspeak_channel": thingspeak_channel, "db": db}
        if generated:
            out["password"] = password      # shown once: the database keeps only its hash
        click.echo(json.dumps(out, indent=2))
        return
    click.echo("station %s added to %s" % (station_id, db))
    if generated:
        click.echo("password: %s  (shown once: configure it on the station as ocpp.password)" % password)


@gateway.command("remove-station")
@click.argument("station_id")
@_db_option
def remove_station(station_id, db):
    """Remove STATION_ID from the database: its password and ThingSpeak channel go, its readings,
    transactions and history stay. A running gateway keeps it until restarted: use
    DELETE /api/stations/STATION_ID on a running one, which also closes its connection."""
    try:
        gone = Store(db).remove_station_sync(station_id)
    except StoreError as e:
        raise click.ClickException(str(e))
    if not gone:
        raise click.ClickException("no station %s in %s (list them with `picocharge gateway stations --db %s`)"
                                   % (station_id, db, db))
    click.echo("station %s removed from %s (its readings stay)" % (station_id, db))


@gateway.command("stations")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def stations(db, as_json):
    """List the registered stations (never their passwords or keys)."""
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
        click.echo("no stations in %s: add one with `picocharge gateway add-station ID`" % db)
        return
    click.echo("%-20s %-9s %-14s %-20s %s" % ("station", "state", "status", "last seen", "thingspeak"))
    for r in out:
        click.echo("%-20s %-9s %-14s %-20s %s" % (r["id"], r["state"], r["status"] or "-",
                                                 r["last_seen"] or "-", r["thingspeak_channel"] or "-"))
