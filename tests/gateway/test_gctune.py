"""The collector's thresholds follow the fleet (gateway/gctune.py): low while stations connect,
high once they are in, low again when many connect at once. Stations over real sockets."""
import asyncio
import gc

import pytest

from support.stations import Connected, boot
from picocharge.gateway import gctune


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


async def _until(pred, timeout=10):
    for _ in range(int(timeout / 0.05)):
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


async def test_gctune__low_while_stations_connect_high_once_they_are_in(gateway, monkeypatch, restore_gc):
    monkeypatch.setattr(gctune.GcTuner, "PERIOD", 1.0)
    monkeypatch.setattr(gctune.GcTuner, "CHURN", 3)
    gw = await gateway(gc_freeze=True)
    assert gc.get_threshold() == gctune.CONNECTING
    async with Connected(gw.port, "CP-1") as cp:
        await boot(cp)
        assert await _until(lambda: gc.get_threshold() == gctune.STEADY), gc.get_threshold()
        # a storm: CHURN stations within a period bring the short young collections back, before
        # the period ends (6 connect: at least 3 of them fall in one period)
        conns = [Connected(gw.port, "CP-%d" % i) for i in range(2, 8)]
        for c in conns:
            await c.__aenter__()
        try:
            assert await _until(lambda: gc.get_threshold() == gctune.CONNECTING, 1.0), gc.get_threshold()
            assert await _until(lambda: gc.get_threshold() == gctune.STEADY), gc.get_threshold()
        finally:
            for c in conns:
                await c.__aexit__(None, None, None)


async def test_gctune__off_without_gc_freeze(gateway, restore_gc):
    gc.set_threshold(700, 10, 10)
    await gateway(gc_freeze=False)
    assert gc.get_threshold() == (700, 10, 10)
