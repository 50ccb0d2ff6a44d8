"""`picocharge thingspeak`: ThingSpeak channel set-up through ThingSpeak's channel API."""
import json
import urllib.error
import urllib.parse
import urllib.request

import click

from . import device
from .gateway.readings import THINGSPEAK_FIELDS
from .options import echo_json, json_option, thingspeak_url_option


def mask(key):
    """A key shown safely: its last 4 characters only."""
    if not key:
        return ""
    return "*" * max(0, len(key) - 4) + key[-4:] if len(key) > 8 else "***"


def field_names():
    """{"field1": "Enclosure temperature (degC)", ...} from the shared field map."""
    out = {}
    for n, _key, label, unit in THINGSPEAK_FIELDS:
        out["field%d" % n] = "%s (%s)" % (label, unit) if unit else label
    return out


def create_channel(base_url, account_key, name, public=False, timeout=20):
    """POST /channels.json; returns (channel id, write key, read key, answer)."""
    form = {"api_key": account_key, "name": name, "public_flag": "true" if public else "false"}
    form.update(field_names())
    url = base_url.rstrip("/") + "/channels.json"
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    device._trace(("http", "POST", url))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise click.ClickException(
                "ThingSpeak refused the account key (HTTP %d): use the *user* API key from "
                "ThingSpeak's Account > My Profile page (not a channel's write key)" % e.code)
        raise click.ClickException("ThingSpeak at %s answered HTTP %d: %s" % (
            url, e.code, e.read()[:200].decode(errors="replace")))
    except OSError as e:
        raise click.ClickException("cannot reach ThingSpeak at %s (%s): check the network, or the "
                                   "--url of a self-hosted server" % (url, getattr(e, "reason", e)))
    try:
        ans = json.loads(raw)
        keys = ans.get("api_keys") or []
        write = next(k["api_key"] for k in keys if k.get("write_flag"))
        read = next((k["api_key"] for k in keys if not k.get("write_flag")), "")
        return int(ans["id"]), write, read, ans
    except (ValueError, KeyError, StopIteration, TypeError, AttributeError):
        raise click.ClickException("ThingSpeak's answer from %s has no channel id and write key: %r"
                                   % (url, raw[:200]))


@click.group()
def thingspeak():
    """ThingSpeak channels for station telemetry."""


@thingspeak.command("create-channel")
@click.option("--account-key", envvar="PICOCHARGE_THINGSPEAK_ACCOUNT_KEY", required=True,
              metavar="SECRET", help="Your ThingSpeak user API key (Account > My Profile). "
                                     "[env: PICOCHARGE_THINGSPEAK_ACCOUNT_KEY]")
@click.option("--name", default="PicoCharge station", show_default=True, help="Channel name.")
@click.option("--public", is_flag=True, help="Make the channel public.")
@click.option("--show-key", is_flag=True, help="Print the write key in full (it is masked otherwise).")
@thingspeak_url_option
@json_option
def create_channel_cmd(account_key, name, public, show_key, ts_url, as_json):
    """Create a channel whose eight fields carry PicoCharge's field map.

    Prints the channel id, write key and read key, ready for
    `picocharge provision --thingspeak-channel ID --thingspeak-key KEY`, or for a gateway that
    re-uploads the station's readings (`picocharge gateway add-station ... --thingspeak-read-key`:
    a private channel is read back with it after a restart).
    """
    cid, write, read, _ans = create_channel(ts_url, account_key, name, public)
    shown = write if show_key else mask(write)
    shown_read = read if show_key else mask(read)
    if as_json:
        echo_json({"channel_id": cid, "write_key": shown, "read_key": shown_read,
                   "name": name, "fields": field_names()})
        return
    click.echo("created ThingSpeak channel %d (%s)" % (cid, name))
    for k, v in field_names().items():
        click.echo("  %-7s %s" % (k, v))
    hint = "" if show_key else "  (--show-key to print it)"
    click.echo("write key: %s%s" % (shown, hint))
    if read:
        click.echo("read key:  %s%s" % (shown_read, hint))
    click.echo("next: picocharge provision --thingspeak-channel %d --thingspeak-key %s" % (
        cid, write if show_key else "<write key>"))
    read_opt = " --thingspeak-read-key %s" % (read if show_key else "<read key>") if read and not public else ""
    click.echo("  or: picocharge gateway add-station <station-id> --thingspeak-channel %d --thingspeak-key %s%s"
               % (cid, write if show_key else "<write key>", read_opt))
