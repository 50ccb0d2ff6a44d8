"""The simulated stations' heap (tools/unixport.DEFAULT_HEAP) holds a long-lived station: with
its tasks running, every group of modules the firmware loads for one use (each kind of call,
an update, diagnostics, an outage's backlogs) is loaded and dropped in turn, and each loads.
At 192K, the heap the firmware is held to elsewhere, the 64-bit port cannot place the qstr
pool those names need (docs/firmware.md, "The qstr-pool cliff"); the probe is
benchmarks/rp2040_heap.py's, on the unix board with every link refused."""
import importlib.util
from pathlib import Path

from picocharge import unixport

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("rp2040_heap", ROOT / "benchmarks" / "rp2040_heap.py")
heap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(heap)


def test_sim_heap__a_simulated_station_loads_every_use_after_an_outage():
    res = heap.measure_qstr_unix(seconds=3, heap=unixport.DEFAULT_HEAP)
    out = res.pop("output")
    print(heap.qstr_report(res, "unix port, -X heapsize=%s" % unixport.DEFAULT_HEAP))
    assert not res["errors"] and not res["probe_oom"], out[-3000:]
    names = [p["after"] for p in res["points"]]
    # every use, in turn, after the running station ("held"); a MemoryError would end the list
    assert names[:2] == ["probe", "held"] and names[2:2 + len(heap.qstr_uses())] == \
        [",".join(g) for g in heap.qstr_uses()], (names, out[-3000:])
    held, last = res["points"][1], res["points"][1 + len(heap.qstr_uses())]
    assert last["n_qstr"] - held["n_qstr"] >= 200, (held, last)     # the uses brought their names
    assert last["n_pool"] > held["n_pool"], (held, last)             # and the pool they needed
