"""`picocharge gateway` as a user meets it (issue 16, the command line): every option's
environment variable in --help and in docs/gateway.md's table, alike; the commands that only
read refuse a --db that does not exist instead of creating an empty database."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def picocharge(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "picocharge.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ, COLUMNS="200", **(env or {})), timeout=120)


def _docs_table():
    """{option: env} from the options table of docs/gateway.md."""
    rows = {}
    text = DOCS.read_text()
    table = text[text.index("| option | env | default | what |"):]
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        opt = re.match(r"`(--[a-z-]+)", cells[0]).group(1)
        rows[opt] = cells[1].strip("`")
    return rows


def _help_table(out):
    """({option: env}, [options]) from `picocharge gateway --help` (its Options section)."""
    opts = out[out.index("Options:"):out.index("Commands:")]
    rows, options = {}, []
    for block in re.split(r"\n(?=  -)", opts)[1:]:
        text = " ".join(block.split())
        opt = re.search(r"(--[a-z-]+)", text).group(1)
        options.append(opt)
        m = re.search(r"\[env var: ([A-Z_]+)", text)
        if m:
            rows[opt] = m.group(1)
    return rows, options


def test_gateway_cli__every_option_shows_its_env_var_as_the_docs_say():
    r = picocharge("gateway", "--help")
    assert r.returncode == 0, r
    shown, options = _help_table(r.stdout)
    options = [o for o in options if o != "--help"]
    # every option of the gateway has an environment variable, and --help shows it
    assert sorted(shown) == sorted(options), (sorted(set(options) - set(shown)), r.stdout)
    assert _docs_table() == shown, (_docs_table(), shown)
    assert shown["--clock-aligned-interval"] == "PICOCHARGE_GATEWAY_CLOCK_ALIGNED_INTERVAL"


def test_gateway_cli__env_var_shown_is_the_one_read(tmp_path):
    # what --help shows is what the option reads: a bad value through it is reported by that name
    r = picocharge("gateway", "--port", "0", env={"PICOCHARGE_GATEWAY_CLOCK_ALIGNED_INTERVAL": "soon"})
    assert r.returncode == 2 and "PICOCHARGE_GATEWAY_CLOCK_ALIGNED_INTERVAL" in r.stderr and \
        "'soon': give seconds 0..86400, or keep" in r.stderr, r


@pytest.mark.parametrize("args, what", [
    (("stations",), "no gateway database at typo.db: check --db (or PICOCHARGE_GATEWAY_DB)"),
    (("stations", "--json"), "no gateway database at typo.db: check --db (or PICOCHARGE_GATEWAY_DB)"),
    (("token", "list"), "no token file at typo.db.tokens: check --db (or PICOCHARGE_GATEWAY_DB) and "
                        "--tokens-file"),
    (("remove-station", "CP-1"), "no gateway database at typo.db: check --db (or PICOCHARGE_GATEWAY_DB)"),
])
def test_gateway_cli__read_only_commands_refuse_a_missing_db(tmp_path, args, what):
    r = picocharge("gateway", *args, "--db", "typo.db", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr.startswith("Error: " + what), r.stderr
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)    # no empty database made


def test_gateway_cli__read_only_commands_read_an_existing_db(tmp_path):
    r = picocharge("gateway", "add-station", "CP-1", "--db", "gw.db", "--json", cwd=tmp_path)
    assert r.returncode == 0, r
    r = picocharge("gateway", "stations", "--db", "gw.db", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.splitlines()[1].split()[:2] == ["CP-1", "accepted"], r
    r = picocharge("gateway", "token", "create", "--db", "gw.db", cwd=tmp_path)
    assert r.returncode == 0, r
    r = picocharge("gateway", "token", "list", "--db", "gw.db", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.splitlines()[1].split()[:2] == ["t1", "read"], r


def test_gateway_cli__a_command_takes_the_db_given_to_the_gateway_group(tmp_path):
    # found attacking the gateway: `gateway --db X token create` wrote picocharge-gateway.db.tokens
    # in the working folder, and the token was then refused by the gateway running on X
    db = tmp_path / "site.db"
    r = picocharge("gateway", "--db", str(db), "token", "create", "--role", "read", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "site.db.tokens").is_file() and not (tmp_path / "picocharge-gateway.db.tokens").exists()
    # the command's own --db still wins
    r = picocharge("gateway", "--db", str(db), "token", "create", "--db", str(tmp_path / "other.db"), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "other.db.tokens").is_file(), r.stderr
