"""`GET /metrics`: the gateway's counters in Prometheus' text format, by prometheus_client.

A collector reads the live counters (`Gateway.metrics`, the store, the uplinks) when asked,
so the hot path keeps incrementing plain ints. The outbox depths come from the database,
read just before (`render`), since a collector cannot await.
"""
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the route)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .events import HUB
from .uplinks import outbox_depth


class GatewayCollector:
    def __init__(self, gw):
        self.gw = gw
        self.depths = {}

    def collect(self):
        gw, mt = self.gw, self.gw.metrics
        g = GaugeMetricFamily("picocharge_stations_connected", "OCPP stations connected now.")
        g.add_metric([], len(gw.sessions))
        yield g
        g = GaugeMetricFamily("picocharge_stations_known", "Registered stations.")
        g.add_metric([], len(gw.stations))
        yield g
        yield CounterMetricFamily("picocharge_ocpp_messages", "OCPP frames received from stations.",
                                  value=mt.messages)
        g = GaugeMetricFamily("picocharge_messages_per_second",
                              "OCPP frames received per second (last ~10 s).")
        g.add_metric([], mt.rate())
        yield g
        w = gw.gc_watch
        if w is not None:
            c = CounterMetricFamily("picocharge_gc_cpu_seconds", "CPU the garbage collector took, by generation.",
                                    labels=["generation"])
            n = CounterMetricFamily("picocharge_gc_collections", "Garbage collections, by generation.",
                                    labels=["generation"])
            for gen in (0, 1, 2):
                c.add_metric([str(gen)], w.cpu_s[gen])
                n.add_metric([str(gen)], w.passes[gen])
            yield c
            yield n
        yield CounterMetricFamily("picocharge_readings_stored",
                                  "Readings stored (OCPP, HTTP and MQTT ingest).", value=mt.readings)
        yield CounterMetricFamily("picocharge_ocpp_refused",
                                  "WebSocket handshakes refused (auth, path, subprotocol).", value=mt.refused)
        yield CounterMetricFamily("picocharge_auth_throttled",
                                  "Attempts refused because of earlier failed credentials (API and OCPP).",
                                  value=gw.throttle.refused if gw.throttle else 0)
        yield CounterMetricFamily("picocharge_http_refused",
                                  "HTTP connections refused with 503 at the connection cap.",
                                  value=mt.http_refused)
        yield CounterMetricFamily("picocharge_ocpp_answers_dropped",
                                  "CALLRESULTs/CALLERRORs from stations that answered no pending call.",
                                  value=mt.dropped_answers)
        yield CounterMetricFamily("picocharge_mqtt_telemetry_dropped",
                                  "MQTT telemetry messages refused (bad JSON, values, times, size).",
                                  value=gw.mqtt.dropped if gw.mqtt else 0)
        yield CounterMetricFamily("picocharge_db_failed_batches",
                                  "Batches of writes the store could not commit (full disk, I/O error).",
                                  value=gw.store.failed_batches)
        c = CounterMetricFamily("picocharge_ocpp_authenticated",
                                "Station connections let in, by OCPP security profile (0: --auth none, 1: Basic over "
                                "ws://, 2: Basic over wss://, 3: client certificate).", labels=["profile"])
        for k, v in sorted(mt.profiles.items()):
            c.add_metric([str(k)], v)
        yield c
        c = CounterMetricFamily("picocharge_ocpp_replayed",
                                "StartTransaction/StopTransaction sent again by a station (after a reboot): "
                                "answered as the first time, nothing changed.", labels=["action"])
        for k, v in sorted(mt.replayed.items()):
            c.add_metric([k], v)
        yield c
        ts = gw.thingspeak
        for name, attr, text in (("merged", "merged", "Readings merged into another reading's ThingSpeak entry "
                                                      "(same created_at second)."),
                                 ("superseded", "superseded", "Field values replaced by a later reading of the "
                                                              "same second before upload."),
                                 ("late", "late", "Readings for a second the channel already holds: not sent.")):
            yield CounterMetricFamily("picocharge_thingspeak_" + name, text,
                                      value=getattr(ts, attr, 0) if ts else 0)
        yield CounterMetricFamily("picocharge_db_commits",
                                  "SQLite transactions committed by the batching writer.", value=gw.store.commits)
        c = CounterMetricFamily("picocharge_ingest", "Readings received through the ingest paths.",
                                labels=["path"])
        for k, v in sorted(mt.ingest.items()):
            c.add_metric([k], v)
        yield c
        g = GaugeMetricFamily("picocharge_outbox_depth", "Readings not yet delivered, per uplink.",
                              labels=["uplink"])
        for u in gw.uplinks:
            g.add_metric([u.name], self.depths.get(u.name, 0))
        yield g
        c = CounterMetricFamily("picocharge_uplink_delivered", "Readings delivered, per uplink.",
                                labels=["uplink"])
        for u in gw.uplinks:
            c.add_metric([u.name], u.delivered)
        yield c
        c = CounterMetricFamily("picocharge_uplink_errors", "Failed uploads or connections, per uplink.",
                                labels=["uplink"])
        for u in gw.uplinks:
            c.add_metric([u.name], u.errors)
        yield c
        cl = gw.cluster
        if cl is not None:      # several processes on one PostgreSQL database (cluster.py)
            yield GaugeMetricFamily("picocharge_cluster_processes", "Gateway processes alive on the database.",
                                    value=cl.nodes)
            yield GaugeMetricFamily("picocharge_cluster_leases", "Uplink work leases this process holds.",
                                    value=len(cl.leases))
            yield GaugeMetricFamily("picocharge_cluster_stations_elsewhere",
                                    "Stations connected to the other processes.", value=len(cl.remote))
            yield CounterMetricFamily("picocharge_cluster_takeovers",
                                      "Leases taken over from a process that died.", value=cl.takeovers)
            yield CounterMetricFamily("picocharge_mqtt_resent",
                                      "Readings of a dead process's MQTT batch in flight, sent again (at-least-once).",
                                      value=gw.mqtt.resent if gw.mqtt else 0)
        hub = _hub(gw)
        if hub is not None:
            live = hub.state()
            yield GaugeMetricFamily("picocharge_live_streams", "Dashboard event streams (GET /api/events) open now.",
                                    value=live["open"])
            yield CounterMetricFamily("picocharge_live_stream_events_dropped",
                                      "Events dropped for event-stream readers too slow to take them.",
                                      value=live["dropped"])
            yield CounterMetricFamily("picocharge_live_streams_refused",
                                      "Event streams refused: every slot taken, or the token's own share.",
                                      value=live["refused"])


def _hub(gw):
    """The dashboard's event hub (gateway/events.py), once the listening port is up."""
    return gw.front.app.get(HUB) if gw.front is not None else None


class GatewayMetrics:
    def __init__(self, gw):
        self.gw = gw
        self.collector = GatewayCollector(gw)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    async def render(self):
        names = [u.name for u in self.gw.uplinks]
        if names:
            self.collector.depths = await self.gw.store.run(lambda db: {n: outbox_depth(db, n) for n in names})
        return generate_latest(self.registry)
