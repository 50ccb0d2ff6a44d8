"""PicoCharge gateway: OCPP 1.6J central system, storage, uplinks, dashboard."""
