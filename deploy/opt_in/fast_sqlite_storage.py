"""OPT-IN, NOT THE DEFAULT: a faster SQLite event log that depends on Dagster's private internals.

The project's dagster.yaml uses Dagster's own SQLite storage (public settings only), and the
package (ecomm_assets) imports nothing private from Dagster. This module lives outside the package,
in deploy/opt_in/, and is used only by an instance configured with deploy/dagster-fast-local.yaml,
with deploy/opt_in on PYTHONPATH, which names it as a custom storage:

    storage:
      custom:
        module: fast_sqlite_storage
        class: FastSqliteStorage
        config:
          base_dir: .dagster

Same folder, files, schema and migrations as the default (`storage: sqlite: base_dir: .dagster`),
so switching either way keeps the history; Dagster's own storage reads what this one writes (a test
checks that, event for event).

Why: Dagster's `SqliteEventLogStorage` creates a SQLAlchemy engine, opens, fsyncs and closes a
connection, and re-inspects the schema for every event it stores. A one-run backfill of a year
records about 10,000 events (a planned event and a materialization per asset and day), so that
bookkeeping takes longer than the data work. `FastSqliteEventLogStorage` keeps one engine and one
open connection per database file (so SQLAlchemy's compiled-statement cache is used), remembers
which tables and columns exist (migrations only add them), and commits with `synchronous=NORMAL`,
the usual setting for SQLite's write-ahead log: a power loss can undo the last commits but cannot
corrupt the file. A writer that keeps its connection open leaves its commits in `<run>.db-wal`
instead of checkpointing them into `<run>.db` on every close, so the watcher that streams a run's
events to the UI listens to both files.

The cost: it subclasses Dagster's private classes (`dagster._core...`) and overrides about ten of
their underscored members, which Dagster can change in any release without notice. Check its tests
(ecomm_assets_tests/test_instance.py) after every Dagster upgrade; if they fail, go back to the
default dagster.yaml (same files: nothing is lost).
"""

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from watchdog.observers import Observer

# Database files one process keeps open (three file handles each with the write-ahead log): the
# index plus the runs it touched last. A webserver reads many runs; the rest are closed.
OPEN_DATABASES = 16


def _commit_without_fsync(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class FastSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with engines and connections kept open and schema checks
    remembered. Configured like it: `base_dir`, the folder of the run shards and the index."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, sa.Engine] = OrderedDict()
        self._known_tables: set[str] = set()
        self._known_asset_key_columns: set[str] = set()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> "FastSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> sa.Engine:
        """The shard's engine, created (and the shard's schema made) on first use. Called under
        the storage's lock, which also serializes use of each engine's single connection."""
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
        if shard not in self._initialized_dbs:
            # Dagster's schema set-up opens a second connection while holding one.
            self._initdb(sa.create_engine(self.conn_string_for_shard(shard), poolclass=sa.NullPool, connect_args=connect_args))
            self._initialized_dbs.add(shard)
        engine = sa.create_engine(self.conn_string_for_shard(shard), pool_size=1, max_overflow=0, connect_args=connect_args)
        sa.event.listen(engine, "connect", _commit_without_fsync)
        self._engines[shard] = engine
        if len(self._engines) > OPEN_DATABASES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        with self._db_lock, self._engine(shard).connect() as connection, connection.begin():
            yield connection

    def _close_databases(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def has_table(self, table_name: str) -> bool:
        # Dagster asks for every asset event; a table, once there, stays. Not cached when missing,
        # so a migration run by another process is seen.
        if table_name not in self._known_tables and super().has_table(table_name):
            self._known_tables.add(table_name)
        return table_name in self._known_tables

    def _has_asset_key_col_on_connection(self, conn: sa.Connection, column_name: str) -> bool:
        if column_name not in self._known_asset_key_columns and super()._has_asset_key_col_on_connection(conn, column_name):
            self._known_asset_key_columns.add(column_name)
        return column_name in self._known_asset_key_columns

    def watch(self, run_id: str, cursor: str | None, callback) -> None:
        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = _RunEventsWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (watchdog, self._obs.schedule(watchdog, self._base_dir, recursive=True))

    def wipe(self) -> None:
        self._close_databases()  # before their files are deleted
        super().wipe()

    def dispose(self) -> None:
        self._close_databases()  # closing checkpoints the write-ahead logs into the files
        super().dispose()


class _RunEventsWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's run watcher, woken by writes to the run's write-ahead log as well."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._patterns = [self._log_path, f"{self._log_path}-wal"]

    def on_modified(self, event) -> None:
        self._process_log()


class FastSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (`storage: sqlite: base_dir: ...`: runs, schedules and the event
    log in the same files under `base_dir`) with `FastSqliteEventLogStorage` as its event log."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = FastSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value) -> "FastSqliteStorage":
        return cls.from_local(inst_data=inst_data, **config_value)
