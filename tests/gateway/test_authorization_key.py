"""The gateway learns the AuthorizationKey it gives a station (issue 17, a central-system
conformance case): ChangeConfiguration AuthorizationKey through the command API, accepted by a
charge point built on the ocpp package, which then reconnects with it (HTTP Basic, the key's
bytes as the password, as the OCPP 1.6 security whitepaper has it)."""
import asyncio
import base64
import os

import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from support import stations
from support.gwhttp import basic, http
from support.stations import Connected, boot


def basic_bytes(user, secret):
    return {"Authorization": "Basic " + base64.b64encode(user.encode() + b":" + secret).decode()}


class KeyStation(stations.TestStation):
    """Keeps the AuthorizationKey it is given, as the bytes its hex digits stand for."""
    key = None

    @on(Action.change_configuration)
    def on_change_configuration(self, key, value):
        if key.lower() == "authorizationkey":     # CiString: any case
            type(self).key = bytes.fromhex(value)
        return super().on_change_configuration(key, value)


async def refused(port, headers):
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect("ws://127.0.0.1:%d/ocpp/CP-K" % port, subprotocols=["ocpp1.6"],
                                 additional_headers=headers, open_timeout=10)
    return e.value.response.status_code


async def test_authorization_key__learned_old_kept_until_the_new_one_connects(gateway):
    gw = await gateway(auth="password")
    old = "old-station-password-1"
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-K", "password": old})
    assert s == 201, out
    new = os.urandom(20)        # random bytes, not UTF-8: the whitepaper's "randomly generated binary"
    async with Connected(gw.port, "CP-K", headers=basic("CP-K", old), cls=KeyStation) as cp:
        assert (await boot(cp)).status == "Accepted"
        s, out = await http(gw, "POST", "/api/stations/CP-K/change-configuration",
                            {"key": "AuthorizationKey", "value": new.hex()})
        assert (s, out) == (200, {"status": "Accepted"}), (s, out)
        assert KeyStation.key == new
    # before the station connects with its new key, the old one still works (a station that did
    # not keep the new key across a reboot is not locked out)...
    async with Connected(gw.port, "CP-K", headers=basic("CP-K", old)) as cp:
        assert (await boot(cp)).status == "Accepted"
    assert await refused(gw.port, basic_bytes("CP-K", new[:-1] + b"x")) == 401
    # ...and the new one is accepted
    async with Connected(gw.port, "CP-K", headers=basic_bytes("CP-K", KeyStation.key)) as cp:
        assert (await boot(cp)).status == "Accepted"
    # after that first connection with the new key, the old one is refused, the new one still works
    assert await refused(gw.port, basic("CP-K", old)) == 401
    async with Connected(gw.port, "CP-K", headers=basic_bytes("CP-K", new)) as cp:
        assert (await boot(cp)).status == "Accepted"
    # the key is stored hashed, never in clear
    row = await gw.store.run(lambda db: db.execute("SELECT pw_hash FROM stations WHERE id='CP-K'").fetchone())
    assert row[0].startswith("pbkdf2_sha256$") and " " not in row[0] and new.hex() not in row[0], row[0]


async def test_authorization_key__survives_a_gateway_restart(gateway, tmp_path):
    db = str(tmp_path / "restart.db")
    gw = await gateway(auth="password", db=db)
    await http(gw, "POST", "/api/stations", {"id": "CP-K", "password": "old-station-password-2"})
    new = "0123456789abcdef0123456789ABCDEF"      # 32 hex digits: the 16-byte minimum
    async with Connected(gw.port, "CP-K", headers=basic("CP-K", "old-station-password-2")) as cp:
        await boot(cp)
        s, out = await http(gw, "POST", "/api/stations/CP-K/change-configuration",
                            {"key": "AuthorizationKey", "value": new})
        assert (s, out) == (200, {"status": "Accepted"}), (s, out)
    await gw.stop()
    gw2 = await gateway(auth="password", db=db)
    async with Connected(gw2.port, "CP-K", headers=basic("CP-K", "old-station-password-2")) as cp:
        assert (await boot(cp)).status == "Accepted"
    async with Connected(gw2.port, "CP-K", headers=basic_bytes("CP-K", bytes.fromhex(new))) as cp:
        assert (await boot(cp)).status == "Accepted"
    assert await refused(gw2.port, basic("CP-K", "old-station-password-2")) == 401


class RejectsKeys(stations.TestStation):
    @on(Action.change_configuration)
    def on_change_configuration(self, key, value):
        self.received.append(("ChangeConfiguration", key, value))
        return call_result.ChangeConfiguration(status="Rejected")


async def test_authorization_key__refused_or_bad_key_changes_nothing(gateway):
    gw = await gateway(auth="password")
    pw = "station-password-33"
    await http(gw, "POST", "/api/stations", {"id": "CP-K", "password": pw})
    async with Connected(gw.port, "CP-K", headers=basic("CP-K", pw), cls=RejectsKeys) as cp:
        await boot(cp)
        s, out = await http(gw, "POST", "/api/stations/CP-K/change-configuration",
                            {"key": "AuthorizationKey", "value": "ab" * 20})
        assert (s, out) == (200, {"status": "Rejected"}), (s, out)
        rule = ("bad body for change-configuration: AuthorizationKey must be 16..20 bytes written as 32..40 "
                "hexadecimal digits (OCPP 1.6 security whitepaper), e.g. from `openssl rand -hex 20`")
        for value, why in (("ab" * 15, rule), ("ab" * 21, rule), ("abc" * 11, rule),
                           ("zz" * 16, rule + ": it has a character that is not a hexadecimal digit")):
            s, out = await http(gw, "POST", "/api/stations/CP-K/change-configuration",
                                {"key": "AuthorizationKey", "value": value})
            assert (s, out) == (400, {"error": why}), (value, s, out)
        # the bad keys were never sent
        assert cp.received == [("ChangeConfiguration", "AuthorizationKey", "ab" * 20)], cp.received
    assert await refused(gw.port, basic_bytes("CP-K", b"\xab" * 20)) == 401
    async with Connected(gw.port, "CP-K", headers=basic("CP-K", pw)) as cp:
        assert (await boot(cp)).status == "Accepted"


@pytest.mark.parametrize("pw, ok", [
    ("a" * 16, True), ("A-z0~!:" + "9" * 33, True),      # 16 and 40 printable ASCII characters
    ("a" * 15, False), ("a" * 41, False), ("sixteen chars ok", False), ("sixteen-chärs-ok", False)])
async def test_authorization_key__api_password_rules_agree(gateway, pw, ok):
    gw = await gateway(auth="password")
    await http(gw, "POST", "/api/stations", {"id": "CP-P"})
    s, out = await http(gw, "PUT", "/api/stations/CP-P/password", {"password": pw})
    if ok:
        assert s == 200, out
        async with Connected(gw.port, "CP-P", headers=basic("CP-P", pw)) as cp:
            assert (await boot(cp)).status == "Accepted"
    else:
        assert (s, out) == (400, {"error": "password must be a string of 16..40 printable ASCII characters "
                                           "without spaces (or leave it out to generate one)"}), (s, out)
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-Q", "password": pw})
    assert (s == 201) == ok, (s, out)


class SlowKeyStation(KeyStation):
    """Takes a while to answer a ChangeConfiguration (a second change can arrive meanwhile)."""

    @on(Action.change_configuration)
    async def on_change_configuration(self, key, value):
        await asyncio.sleep(0.5)
        return KeyStation.on_change_configuration(self, key, value)


class DroppingKeyStation(KeyStation):
    """Keeps the key, then drops the link before it answers (a station that saves, then reboots)."""

    @on(Action.change_configuration)
    async def on_change_configuration(self, key, value):
        type(self).key = bytes.fromhex(value)
        await self._connection.close()
        await asyncio.sleep(5)
        return call_result.ChangeConfiguration(status="Accepted")


async def test_authorization_key__any_case_is_the_key_admin_only_and_one_change_at_a_time(gateway):
    # found attacking the gateway: OCPP keys are CiString, so "authorizationkey" is the same key
    # (it went out unchecked and unlearned); an operate token could re-key a station; two changes
    # at once could leave the gateway holding the key the station did not keep
    gw = await gateway(auth="password")
    old = "old-station-password-2"
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-K", "password": old})
    assert s == 201, out
    operate, _ = gw.tokens.create("operate", "night shift")
    async with Connected(gw.port, "CP-K", headers=basic("CP-K", old), cls=SlowKeyStation) as cp:
        assert (await boot(cp)).status == "Accepted"
        s, out = await http(gw, "POST", "/api/stations/CP-K/change-configuration",
                            {"key": "authorizationkey", "value": "hunter2"})
        assert s == 400 and "hex" in out["error"], (s, out)
        s, out = await http(gw, "POST", "/api/stations/CP-K/change-configuration",
                            {"key": "AuthorizationKey", "value": os.urandom(16).hex()},
                            headers={"Authorization": "Bearer " + operate})
        assert s == 403, (s, out)
        # an operate token still changes other keys
        s, out = await http(gw, "POST", "/api/stations/CP-K/change-configuration",
                            {"key": "HeartbeatInterval", "value": "60"}, headers={"Authorization": "Bearer " + operate})
        assert (s, out) == (200, {"status": "Accepted"}), (s, out)
        keys = [os.urandom(16).hex(), os.urandom(16).hex()]
        first = asyncio.ensure_future(http(gw, "POST", "/api/stations/CP-K/change-configuration",
                                           {"key": "AUTHORIZATIONKEY", "value": keys[0]}))
        await asyncio.sleep(0.2)
        s, out = await http(gw, "POST", "/api/stations/CP-K/change-configuration",
                            {"key": "AuthorizationKey", "value": keys[1]})
        assert s == 409 and "still waiting for its answer" in out["error"], (s, out)
        assert await first == (200, {"status": "Accepted"})
        assert SlowKeyStation.key == bytes.fromhex(keys[0])
    async with Connected(gw.port, "CP-K", headers=basic_bytes("CP-K", bytes.fromhex(keys[0]))) as cp:
        assert (await boot(cp)).status == "Accepted"
    assert await refused(gw.port, basic("CP-K", old)) == 401


async def test_authorization_key__a_station_that_drops_the_link_before_answering_may_use_either(gateway):
    gw = await gateway(auth="password")
    old = "old-station-password-3"
    s, out = await http(gw, "POST", "/api/stations", {"id": "CP-K", "password": old})
    assert s == 201, out
    new = os.urandom(16)
    async with Connected(gw.port, "CP-K", headers=basic("CP-K", old), cls=DroppingKeyStation) as cp:
        assert (await boot(cp)).status == "Accepted"
        s, out = await http(gw, "POST", "/api/stations/CP-K/change-configuration",
                            {"key": "AuthorizationKey", "value": new.hex()})
    assert s == 502 and out.get("disconnected") is True, (s, out)
    assert "both its old and the new key are accepted" in out["error"], out
    # the station kept the new key before it dropped the link: it gets in with it...
    async with Connected(gw.port, "CP-K", headers=basic_bytes("CP-K", new)) as cp:
        assert (await boot(cp)).status == "Accepted"
    # ...after which the old one is gone
    assert await refused(gw.port, basic("CP-K", old)) == 401
