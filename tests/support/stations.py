"""Charge points written with the ocpp package, for the gateway tests."""
import asyncio
import itertools

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action


class TestStation(ChargePoint):
    """Answers the central system's calls the way the firmware does; records them."""

    def __init__(self, sid, ws):
        super().__init__(sid, ws)
        self.received = []
        ids = itertools.count(1)
        self._unique_id_generator = lambda: "%s-%d" % (sid, next(ids))

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, **kw):
        self.received.append(("RemoteStartTransaction", id_tag))
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id):
        self.received.append(("RemoteStopTransaction", transaction_id))
        return call_result.RemoteStopTransaction(status="Accepted")

    @on(Action.reset)
    def on_reset(self, type):
        self.received.append(("Reset", type))
        return call_result.Reset(status="Accepted")

    @on(Action.get_configuration)
    def on_get_configuration(self, **kw):
        return call_result.GetConfiguration(configuration_key=[
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"}])

    @on(Action.change_configuration)
    def on_change_configuration(self, key, value):
        self.received.append(("ChangeConfiguration", key, value))
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.update_firmware)
    def on_update_firmware(self, location, retrieve_date, **kw):
        self.received.append(("UpdateFirmware", location))
        return call_result.UpdateFirmware()

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location, **kw):
        # the name it would upload (docs/ota.md); support.otaboard.OtaBoard uploads it too
        self.received.append(("GetDiagnostics", location))
        return call_result.GetDiagnostics(file_name="%s-20260101T100000Z.log" % self.id)

    @on(Action.unlock_connector)
    def on_unlock(self, connector_id):
        return call_result.UnlockConnector(status="NotSupported")

    # Local Auth List Management, Reservation, DataTransfer (issue 14): accepted and recorded
    @on(Action.send_local_list)
    def on_send_local_list(self, list_version, update_type, **kw):
        self.received.append(("SendLocalList", list_version, update_type))
        return call_result.SendLocalList(status="Accepted")

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self):
        return call_result.GetLocalListVersion(list_version=0)

    @on(Action.clear_cache)
    def on_clear_cache(self):
        self.received.append(("ClearCache",))
        return call_result.ClearCache(status="Accepted")

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id, expiry_date, id_tag, reservation_id, **kw):
        self.received.append(("ReserveNow", reservation_id))
        return call_result.ReserveNow(status="Accepted")

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id):
        self.received.append(("CancelReservation", reservation_id))
        return call_result.CancelReservation(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, **kw):
        return call_result.DataTransfer(status="UnknownVendorId")

    # Smart Charging (issue 13): taken and recorded; smartstation.SmartStation keeps the profiles
    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id, cs_charging_profiles):
        self.received.append(("SetChargingProfile", connector_id, cs_charging_profiles["charging_profile_id"]))
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **kw):
        self.received.append(("ClearChargingProfile", kw))
        return call_result.ClearChargingProfile(status="Unknown")

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id, duration, **kw):
        return call_result.GetCompositeSchedule(status="Rejected")


class Connected:
    """`async with Connected(port, "CP-1") as cp:` a started TestStation."""

    def __init__(self, port, sid, headers=None, cls=TestStation):
        self.url = "ws://127.0.0.1:%d/ocpp/%s" % (port, sid)
        self.sid = sid
        self.headers = headers
        self.cls = cls

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, subprotocols=["ocpp1.6"],
                                          additional_headers=self.headers, open_timeout=10)
        self.cp = self.cls(self.sid, self.ws)
        self.task = asyncio.create_task(self.cp.start())
        return self.cp

    async def __aexit__(self, *exc):
        self.task.cancel()
        await self.ws.close()


def meter(ts, current=None, voltage=None, power=None, energy=None, temp=None, chip=None):
    sv = []
    if current is not None:
        sv.append({"value": str(current), "measurand": "Current.Import", "unit": "A"})
    if voltage is not None:
        sv.append({"value": str(voltage), "measurand": "Voltage", "unit": "V"})
    if power is not None:
        sv.append({"value": str(power), "measurand": "Power.Active.Import", "unit": "W"})
    if energy is not None:
        sv.append({"value": str(energy), "measurand": "Energy.Active.Import.Register", "unit": "Wh"})
    if temp is not None:
        sv.append({"value": str(temp), "measurand": "Temperature", "unit": "Celsius", "location": "Body"})
    if chip is not None:
        sv.append({"value": str(chip), "measurand": "Temperature", "unit": "Celsius", "location": "Outlet"})
    return {"timestamp": ts, "sampled_value": sv}


async def boot(cp):
    return await cp.call(call.BootNotification(charge_point_vendor="PicoCharge", charge_point_model="PicoW"))


def has_nul(v):
    """Whether any text in a JSON-like value (keys included) holds U+0000, which the gateway
    refuses at its doors beyond what the OCPP schemas say."""
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, dict):
        return any(has_nul(k) or has_nul(x) for k, x in v.items())
    if isinstance(v, list):
        return any(has_nul(x) for x in v)
    return False
