"""A throwaway PostgreSQL server from Debian's binaries (/usr/lib/postgresql/<version>/bin): a
cluster made by initdb in a folder of its own, listening on 127.0.0.1 only, on a free port, with
password authentication (scram-sha-256; the password is new for each cluster). Used by
`picocharge bench --db postgresql` and by the test suite's `pg_server` fixture.

initdb and postgres refuse to run as root: as root (CI, this machine) they run as the `postgres`
system user the Debian package creates, in a folder that user owns; as anyone else, as
themselves. The server is a child of this process (not pg_ctl's daemon) and ends with it, even
when this process is killed (procs.child_options: PR_SET_PDEATHSIG). Durability is off (fsync,
synchronous_commit, full_page_writes): a throwaway cluster lives as long as its run.
"""
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .procs import child_options, stop_process

NOT_INSTALLED = ("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install "
                 "postgresql")


def find_bin(missing=NOT_INSTALLED):
    """The newest /usr/lib/postgresql/<version>/bin holding initdb (or $PICOCHARGE_PG_BIN);
    FileNotFoundError(`missing`) when there is none."""
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
    raise FileNotFoundError(missing)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """start() -> self; url(dbname); create_database(name) -> its URL; drop_database(url); stop()."""

    SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                "max_connections": "200", "shared_buffers": "32MB"}

    def __init__(self, prefix="picocharge-pg-", settings=None, missing=NOT_INSTALLED):
        self.prefix = prefix
        self.settings = dict(self.SETTINGS, **(settings or {}))
        self.missing = missing
        self.password = "pw-" + secrets.token_hex(12)
        self.port = None
        self.root = None
        self.proc = None
        self.log = None
        self._user = None

    def _as_user(self):
        """subprocess keywords that run a child as the postgres user when we are root."""
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def start(self):
        bindir = find_bin(self.missing)
        if os.getuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, PostgreSQL needs an unprivileged user to run as: Debian's "
                                   "package creates `postgres` (apt-get install postgresql)")
        self.root = tempfile.mkdtemp(prefix=self.prefix)
        os.chmod(self.root, 0o700)
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        data = os.path.join(self.root, "data")
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self._user is not None:
            os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
        out = subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile,
                              "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                              "--locale=C.UTF-8", "--no-sync"],
                             capture_output=True, text=True, timeout=120, cwd=self.root, **self._as_user())
        os.unlink(pwfile)
        if out.returncode != 0:
            raise RuntimeError("initdb failed (exit %d): %s" % (out.returncode, out.stderr[-2000:]))
        self.port = _free_port()
        self.log = os.path.join(self.root, "postgres.log")
        argv = [os.path.join(bindir, "postgres"), "-D", data, "-c", "listen_addresses=127.0.0.1",
                "-c", "port=%d" % self.port, "-c", "unix_socket_directories=%s" % self.root]
        for k, v in self.settings.items():
            argv += ["-c", "%s=%s" % (k, v)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.root, **dict(child_options(), **self._as_user()))
        import psycopg

        end = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=5).close()
                return self
            except psycopg.OperationalError as e:
                if self.proc.poll() is not None or time.monotonic() > end:
                    with open(self.log, errors="replace") as f:
                        tail = f.read()[-2000:]
                    self.stop()
                    raise RuntimeError("postgres did not start (%s): %s" % (e, tail))
            time.sleep(0.1)

    def url(self, dbname="postgres"):
        return "postgresql://postgres:%s@127.0.0.1:%d/%s" % (self.password, self.port, dbname)

    def create_database(self, name):
        """A new empty database `name` (letters, digits, _); its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as c:
            c.execute("CREATE DATABASE %s" % name)
        return self.url(name)

    def drop_database(self, url):
        import psycopg

        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as c:
            c.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)

    def stop(self, keep_log=None):
        """Stop the server and remove its folder (its log copied to `keep_log` first, if given)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)   # PostgreSQL's fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)
            self.proc = None
        if self.root is not None:
            if keep_log is not None and self.log:
                try:
                    shutil.copy(self.log, keep_log)
                except OSError:
                    pass
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
