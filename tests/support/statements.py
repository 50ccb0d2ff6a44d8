"""A database connection that counts the statements run through it (tests that a path's
statements do not grow with the stations)."""


class Statements:
    def __init__(self, db):
        self.db, self.n = db, 0

    def execute(self, *a):
        self.n += 1
        return self.db.execute(*a)

    def __getattr__(self, name):
        return getattr(self.db, name)
