"""Link errors said in words with the likely cause (issue 16), not OSError(111,) or
[addrinfo error -2]; the "[ocpp] W: link down" prefix `picocharge sim` watches for is kept."""
import linkerr
from support.net import free_port

from support.central import station_config


def test_linkerr__words_for_refused_unresolvable_timeout_and_others():
    url = "ws://cs.example:9000/ocpp"
    assert linkerr.words(OSError(111), url) == (
        "connection refused by cs.example:9000: nothing listens there; is the central system running, "
        "and is the port in ocpp.url right?")
    assert linkerr.words(OSError(-2, "[addrinfo error -2]"), "wss://nosuch.invalid/ocpp") == (
        "cannot resolve nosuch.invalid: check the host name in ocpp.url (and the network's DNS)")
    assert linkerr.words(OSError(110), url).startswith("timed out connecting to cs.example:9000")
    assert linkerr.host_port("wss://h/x") == ("h", 443) and linkerr.host_port("ws://h") == ("h", 80)


async def test_link__refused_port_and_unresolvable_host_in_words(station):
    port = free_port()  # nobody listens on it
    st = station(station_config("ws://127.0.0.1:%d/ocpp" % port), name="refused").start()
    line = await st.aexpect("[ocpp] W: link down", timeout=30)
    assert line == ("[ocpp] W: link down: connection refused by 127.0.0.1:%d: nothing listens there; "
                    "is the central system running, and is the port in ocpp.url right?" % port), line
    st2 = station(station_config("ws://nosuch.invalid/ocpp"), name="unresolvable").start()
    line = await st2.aexpect("[ocpp] W: link down", timeout=60)
    assert line == ("[ocpp] W: link down: cannot resolve nosuch.invalid: check the host name in "
                    "ocpp.url (and the network's DNS)"), line
    for s in (st, st2):
        out = "\n".join(s.lines)
        assert "OSError" not in out and "addrinfo" not in out, s.tail()
