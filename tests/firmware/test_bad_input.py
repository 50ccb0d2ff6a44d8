"""Bounds found while reading, not after (issue 17): a 3 MB or deeply nested config.json is
the config error a board shows (exit 78 on the unix port), never a MemoryError traceback."""
import pytest

import config


@pytest.mark.parametrize("text, depth", [('{"a": {"b": "[[{{\\""}}', 2), ("[[[[[]]]]]", 5), ("1", 0)])
def test_config__nesting_depth_ignores_brackets_in_strings(text, depth):
    assert config.nesting_depth(text) == depth


def test_config__3_mb_file_is_a_config_error_before_reading(station):
    st = station({"station_id": "CP-7"})
    (st.flash / "config.json").write_text('{"station_id": "CP-7", "pad": "%s"}' % ("x" * (3 << 20)))
    st.start()
    assert st.wait(15) == 78, st.output()
    out = st.output()
    assert ("[config] E: config key '(file)': config.json is 3145761 bytes, more than a config can be "
            "(at most 8192): provision the board again") in out, out
    assert "MemoryError" not in out and "Traceback" not in out, out


def test_config__deeply_nested_file_is_a_config_error(station):
    st = station({"station_id": "CP-7"})
    (st.flash / "config.json").write_text("[" * 3000 + "]" * 3000)
    st.start()
    assert st.wait(15) == 78, st.output()
    out = st.output()
    assert ("[config] E: config key '(file)': config.json nests 3000 levels deep (a config has 2): "
            "provision the board again") in out, out
    assert "MemoryError" not in out and "Traceback" not in out, out
