"""Readings for the ThingSpeak uplink tests: sent by a station, and the entries they become."""
import asyncio
import time

from ocpp.v16 import call

from .stations import meter


def _ts(i):
    return "2026-01-01T10:%02d:%02dZ" % (i // 60, i % 60)


async def _send(cp, first, n):
    for i in range(first, first + n):
        await cp.call(call.MeterValues(connector_id=1, meter_value=[
            meter(_ts(i), current=float(i), temp=20.5)]))


def _entries(first, n):
    return [{"field1": "20.5", "field3": "%.1f" % i, "field8": "2", "created_at": _ts(i)}
            for i in range(first, first + n)]


async def _until(fn, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return True
        await asyncio.sleep(0.05)
    return False


def _clean(entries):
    return [{k: v for k, v in e.items() if k != "entry_id"} for e in entries]
