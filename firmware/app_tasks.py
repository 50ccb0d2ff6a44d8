# The tasks app.py starts (wiring only), their modules imported in an order that keeps a small
# heap in one piece: what boot loads and drops first, then the modules and the objects the
# tasks hold. Loaded by app.run at boot and dropped after: nothing here runs again.
import gc
import sys

import log
from app import watchdog_task

_L = log.get("app")


def tasks(ctx):
    """[(name, the task's function)] of the tasks the config asks for, their modules imported."""
    import flashq_cold

    flashq_cold.open_backlogs(ctx)  # first: see there; then dropped, as after any boot scan
    del flashq_cold
    sys.modules.pop("flashq_cold", None)
    gc.collect()
    import sampler
    import wifi

    out = [("wifi", wifi.run), ("sample", sampler.run), ("watchdog", watchdog_task)]
    c = ctx.cfg
    if c["ocpp"]["url"]:
        import chargepoint

        # the charge point made now, before the other tasks' modules are imported: its journal
        # replay and keys (journal_cold, ocpp_keys_spec: loaded and dropped) leave their room
        # to those imports, not holes between the running tasks' objects
        out.append(("ocpp", chargepoint.task(ctx)))
        gc.collect()
        ctx.state.links["ocpp"] = "down"
    if c["thingspeak"]["enabled"]:
        import thingspeak_upload
        out.append(("thingspeak", thingspeak_upload.run))
    # the libraries the MQTT and web tasks hold from their start on are imported now, with the
    # rest, rather than while the first connections are made (then they took room between
    # those connections' objects, and the 192K heap was too fragmented for the next imports)
    if c["mqtt"]["enabled"]:
        import mqtt_uplink
        import umqtt.simple  # noqa: F401
        out.append(("mqtt", mqtt_uplink.run))
    if c["web"]["enabled"] and c["web"]["port"]:
        import web
        import microdot  # noqa: F401
        out.append(("web", web.run))
    elif c["web"]["enabled"]:
        _L.info("no status page (web.port 0)")
    try:
        with open("fw/ptr") as f:
            trial = " trial " in f.read()
    except OSError:
        trial = False
    if trial:   # a new version: rolled back unless Accepted within ota.trial_s
        import fwslot
        out.append(("trial", fwslot.trial_watch))
    return out
