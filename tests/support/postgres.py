"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries
(/usr/lib/postgresql/<version>/bin), a cluster made by initdb in a temporary folder, listening on
127.0.0.1 only, on a free port, with password authentication (scram-sha-256; the password is new
for each cluster and is in every URL the fixtures give: the tests check that the gateway never
prints it). One per pytest process
(session fixture `pg_server`), stopped at its end; each test that asks for `pg_url` gets a fresh
database in it.

initdb and postgres refuse to run as root: as root (CI, this machine) they run as the `postgres`
system user the Debian package creates, in a folder that user owns; as anyone else, as themselves.
The server is a child of the test process and ends with it, even when the test process is killed.
A missing PostgreSQL is an error, not a skip: scripts/test.sh installs the package.
"""
import glob
import itertools
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import psycopg

from picocharge.procs import child_options, remove_stale_temp, stop_process

from .net import free_port

_ids = itertools.count(1)
_TEMP = "picocharge-pg-"    # + the test process's pid: remove_stale_temp knows when it is gone


def find_bin():
    """The newest /usr/lib/postgresql/<version>/bin holding initdb (or PICOCHARGE_PG_BIN)."""
    env = os.environ.get("PICOCHARGE_PG_BIN")
    if env:
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): the store tests run "
                       "on it too. Install Debian's package: apt-get install postgresql (scripts/test.sh does)")


class PostgresServer:
    def __init__(self):
        self.bin = find_bin()
        self.port = None
        self.root = None
        self.proc = None
        self._user = None
        self.password = "pw-" + secrets.token_hex(12)

    def _as_user(self):
        """subprocess keywords that run a child as the postgres user when we are root."""
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def start(self):
        if os.getuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, PostgreSQL needs an unprivileged user to run as: the Debian "
                                   "package creates `postgres` (apt-get install postgresql)")
        remove_stale_temp(_TEMP)     # the folders of test processes that were killed
        self.root = tempfile.mkdtemp(prefix="%s%d-" % (_TEMP, os.getpid()))
        os.chmod(self.root, 0o700)
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        data = os.path.join(self.root, "data")
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self._user is not None:
            os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
        out = subprocess.run([os.path.join(self.bin, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile,
                              "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                              "--locale=C.UTF-8", "--no-sync"],
                             capture_output=True, text=True, timeout=120, cwd=self.root, **self._as_user())
        if out.returncode != 0:
            raise RuntimeError("initdb failed (%d): %s" % (out.returncode, out.stderr[-2000:]))
        self.port = free_port()
        self.data = data
        self.log = os.path.join(self.root, "postgres.log")
        # the server is our child (not pg_ctl's daemon): it ends with this test process, even one
        # killed without its teardown (PR_SET_PDEATHSIG, set after the switch to the postgres user).
        # fsync off: a test cluster lives as long as the test run; listen on loopback only
        argv = [os.path.join(self.bin, "postgres"), "-D", data, "-c", "listen_addresses=127.0.0.1",
                "-c", "port=%d" % self.port, "-c", "unix_socket_directories=%s" % self.root, "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200",
                "-c", "shared_buffers=32MB"]
        kw = dict(child_options(), **self._as_user())
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.root, **kw)
        end = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=5).close()
                return self
            except psycopg.OperationalError as e:
                if self.proc.poll() is not None or time.monotonic() > end:
                    with open(self.log) as f:
                        tail = f.read()[-2000:]
                    self.stop()
                    raise RuntimeError("postgres did not start (%s): %s" % (e, tail))
            time.sleep(0.1)

    def url(self, dbname="postgres"):
        return "postgresql://postgres:%s@127.0.0.1:%d/%s" % (self.password, self.port, dbname)

    def create_database(self, prefix="t"):
        """A new empty database; its URL."""

        name = "%s_%d_%d_%d" % (prefix, os.getpid(), next(_ids), int(time.time() * 1000) % 100000)
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute("CREATE DATABASE %s" % name)
        return self.url(name)

    def drop_database(self, url):

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)

    def stop(self):
        if self.root is None:
            return
        if self.proc is not None:
            # SIGINT: PostgreSQL's fast shutdown (sessions ended, no checkpoint wait for clients)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
