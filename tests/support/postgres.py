"""A throwaway PostgreSQL server for the tests (picocharge.pgserver, as `picocharge bench --db
postgresql` starts one): Debian's `postgresql` binaries
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

import itertools
import os
import time

from picocharge.pgserver import ThrowawayPostgres
from picocharge.procs import remove_stale_temp

_ids = itertools.count(1)
_TEMP = "picocharge-pg-"    # + the test process's pid: remove_stale_temp knows when it is gone


class PostgresServer(ThrowawayPostgres):
    def __init__(self):
        super().__init__(prefix="%s%d-" % (_TEMP, os.getpid()),
                         missing="PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): the store "
                                 "tests run on it too. Install Debian's package: apt-get install postgresql "
                                 "(scripts/test.sh does)")

    def start(self):
        remove_stale_temp(_TEMP)     # the folders of test processes that were killed
        return super().start()

    def create_database(self, prefix="t"):
        """A new empty database; its URL."""
        return super().create_database("%s_%d_%d_%d" % (prefix, os.getpid(), next(_ids),
                                                        int(time.time() * 1000) % 100000))
