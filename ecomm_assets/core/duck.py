"""In-memory DuckDB connections for the data code.

Opening a new in-memory database costs about 14 ms; a cursor on an open one, microseconds. A
backfill makes thousands of small queries, so every caller gets a cursor (its own connection, with
its own settings, temporary tables and registered tables) on one database per process.
"""

import os

import duckdb

_database: tuple[int, duckdb.DuckDBPyConnection] | None = None


def connect() -> duckdb.DuckDBPyConnection:
    """A new connection, with date parts and casts in UTC whatever the machine's zone."""
    global _database
    if _database is None or _database[0] != os.getpid():  # never share a database across a fork
        _database = (os.getpid(), duckdb.connect())
    con = _database[1].cursor()
    con.execute("SET TimeZone = 'UTC'")
    return con


# DuckDB's memory for work over a whole day (flattening, orders); beyond it, joins, aggregates and
# sorts spill to disk. With Python and pyarrow beside it, a day of any size stays well under 1 GiB.
MEMORY_LIMIT = "512MB"


def bounded(spill: str) -> duckdb.DuckDBPyConnection:
    """A database of its own (memory_limit is a database's setting, not a connection's) whose work
    past MEMORY_LIMIT spills into the folder `spill`, with date parts and casts in UTC."""
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": spill})
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # a long day's query would draw one on the run's stderr
    return con
