"""The test tree's own rules: helpers come from tests/support (no sys.path edits, no conftest
imported as a module), and firmware/ on sys.path (pyproject's `pythonpath`, ahead of the
standard library) shadows nothing."""
import re
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FIRMWARE = TESTS.parent / "firmware"


def test_layout__no_firmware_module_shadows_the_standard_library():
    names = {p.stem for p in FIRMWARE.glob("*.py")}
    assert names and not names & set(sys.stdlib_module_names), sorted(names & set(sys.stdlib_module_names))


def test_layout__no_test_file_edits_sys_path_or_imports_a_conftest():
    bad = []
    for p in sorted(TESTS.rglob("*.py")):
        for n, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"\bsys\.path\.(insert|append)\(", code) or re.match(
                    r"\s*(import conftest\b|from conftest import)", code):
                bad.append("%s:%d: %s" % (p.relative_to(TESTS), n, line.strip()))
    assert not bad, "\n".join(bad)
