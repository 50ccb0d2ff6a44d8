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
    if c["charger"]["pilot"]:
        import evse
        # shut before any task runs: the sample task (free charge) or OCPP must not close the
        # relay before the pilot task has read the EV (seen: closed for a second at boot)
        ctx.state.pilot_ok = False
        out.append(("pilot", evse.run))
    if c["charger"]["rfid"]:
        import rfid
        out.append(("rfid", rfid.run))
    if c["ocpp"]["url"]:
        import chargepoint
        out.append(("ocpp", chargepoint.run))
        ctx.state.links["ocpp"] = "down"
    if c["thingspeak"]["enabled"]:
        import thingspeak_upload
        out.append(("thingspeak", thingspeak_upload.run))
    if c["mqtt"]["enabled"]:
        import mqtt_uplink
        out.append(("mqtt", mqtt_uplink.run))
    if c["web"]["enabled"] and c["web"]["port"]:
        import web
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

