"""Alembic migrations against schema.py, on a real SQLite file and a real PostgreSQL database.

One head reaches every revision file. `upgrade head` builds exactly the tables schema.py
declares: Alembic's `compare_metadata` finds nothing, and every reflected column, index
and constraint equals what `metadata.create_all` builds. A database at each old head (the
heads before 0013_merge_heads, and the revisions they grew from) keeps its rows through the
upgrade, down to that head again and back up. The package ships every migration file, and
the alembic CLI works from the checkout (docs/guides/development.md).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory

from freight.store import schema
from freight.store.db import HEAD_REVISION, Database
from tests.conftest import REPO

MIGRATIONS = REPO / "src" / "freight" / "store" / "migrations"
MIGRATE = "import sys; from freight.store.db import open_database; open_database(sys.argv[1])"
OPEN_WITHOUT_ALEMBIC = (
    MIGRATE + "; assert 'alembic' not in sys.modules, 'a database at head imported Alembic'"
)

# The heads that deployed databases can be at (the four that 0013_merge_heads joins, and the
# revisions they branched from), and what `alembic downgrade REV` from head leaves applied:
# Alembic removes only REV's descendants, so branches that do not descend from REV stay.
OLD_HEADS = {
    "0001": {"0001"},
    "0005_scheduling": {"0005_scheduling", "0010_keys", "0011_upstream", "0012_webhooks"},
    "0008_usage": {"0005_scheduling", "0008_usage"},
    "0010_keys": {"0005_scheduling", "0010_keys", "0011_upstream", "0012_webhooks"},
    "0011_upstream": {"0005_scheduling", "0010_keys", "0011_upstream", "0012_webhooks"},
    "0012_webhooks": {"0005_scheduling", "0010_keys", "0011_upstream", "0012_webhooks"},
}

T0 = 1_700_000_000
# A little of everything, in the columns of the newest schema; a database at an old head
# gets the tables and columns it has.
ROWS: dict[str, list[dict[str, Any]]] = {
    "files": [
        {
            "id": "file-1",
            "project": "p",
            "filename": "in.jsonl",
            "purpose": "batch",
            "bytes": 120,
            "created_at": T0,
            "created_ns": T0 * 10**9,
            "expires_at": None,
            "blob": "p/file-1",
        }
    ],
    "batches": [
        {
            "id": "batch_1",
            "project": "p",
            "api": "openai",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-1",
            "completion_window": "24h",
            "status": "in_progress",
            "model": "m",
            "metadata_json": '{"k": "v"}',
            "created_at": T0,
            "created_ns": T0 * 10**9,
            "expires_at": T0 + 86400,
            "in_progress_at": T0 + 1,
            "num_total": 2,
            "num_succeeded": 1,
            "input_tokens": 7,
        }
    ],
    "requests": [
        {
            "id": "batch_1-r0",
            "batch_id": "batch_1",
            "line": 1,
            "custom_id": "c0",
            "url": "/v1/chat/completions",
            "body": '{"model": "m"}',
            "status": "succeeded",
            "attempts": 1,
            "status_code": 200,
            "response_json": '{"id": "x"}',
            "input_tokens": 7,
            "output_tokens": 3,
            "finished_at": 1.5,
            "admission_key": "k0",
            "dedup_key": "d0",
            "upstream": "up",
            "upstream_batch_id": "ub-1",
        },
        {
            "id": "batch_1-r1",
            "batch_id": "batch_1",
            "line": 2,
            "custom_id": "c1",
            "url": "/v1/chat/completions",
            "body": '{"model": "m"}',
            "status": "running",
            "attempts": 0,
            "lease_owner": "worker-1",
            "lease_expires_at": 2.5,
            "admission_key": "k1",
            "dedup_key": None,
            "upstream": None,
            "upstream_batch_id": None,
        },
    ],
    "batch_events": [
        {"batch_id": "batch_1", "from_status": "validating", "to_status": "in_progress", "at": 1.5}
    ],
    "engine_usage": [
        {
            "node": "n1",
            "model": "m",
            "kind": "batch",
            "period_start": T0,
            "seconds": 2.5,
            "num_requests": 2,
            "input_tokens": 7,
            "output_tokens": 3,
        }
    ],
    "flex_usage": [
        {
            "project": "p",
            "model": "m",
            "period_start": T0,
            "num_requests": 2,
            "input_tokens": 7,
            "output_tokens": 3,
        }
    ],
    "api_keys": [
        {
            "id": "key_1",
            "prefix": "fk-abc",
            "hash": "a" * 64,
            "project": "p",
            "is_admin": True,
            "created_at": T0,
        }
    ],
    "upstream_batches": [
        {
            "id": "ub-1",
            "batch_id": "batch_1",
            "model": "m",
            "style": "openai",
            "status": "submitted",
            "upstream_id": "batch_up_1",
            "num_requests": 1,
            "created_at": 1.5,
            "submitted_at": 2.5,
        }
    ],
    "webhook_endpoints": [
        {
            "id": "we_1",
            "project": "p",
            "name": "hook",
            "url": "https://example.test/hook",
            "secret": "whsec_x",
            "event_types": "batch.completed",
            "created_at": T0,
            "created_ns": T0 * 10**9,
            "updated_at": T0,
        }
    ],
    "webhook_deliveries": [
        {
            "id": "wd_1",
            "endpoint_id": "we_1",
            "event_id": "evt_1",
            "event_type": "batch.completed",
            "batch_id": "batch_1",
            "payload": "{}",
            "status": "pending",
            "created_at": 1.5,
            "next_attempt_at": 2.5,
        }
    ],
}

Inserted = dict[str, set[str]]  # table -> the columns it had when the rows went in


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A database with nothing in it: no tables, no migrations applied."""
    database = Database(database_url)
    yield database
    database.dispose()


def alembic_config(conn: sa.Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def alembic(db: Database, action: Callable[[AlembicConfig, str], None], revision: str) -> None:
    """Run `command.upgrade` or `command.downgrade` in one write transaction, as migrate does."""
    with db.write() as conn:
        action(alembic_config(conn), revision)


def applied(db: Database) -> set[str]:
    with db.read() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def same_server_default(
    context: MigrationContext,
    inspected_column: sa.Column[Any],
    metadata_column: sa.Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Whether a server default differs; None lets Alembic compare it.

    Alembic's SQLite comparison unquotes `'x'` to `x` but leaves the empty literal `''`
    quoted, so `server_default=""` always "differs" on SQLite although the database says
    DEFAULT '' just as schema.py does. That one case is compared here: a comparison
    artefact, not drift (PostgreSQL compares it correctly).
    """
    if context.dialect.name == "sqlite" and rendered_metadata_default == "":
        return inspected_default not in ("''", "('')")
    return None


def drift(db: Database) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match schema.py."""
    with db.read() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": same_server_default}
        )
        return list(compare_metadata(context, schema.metadata))


def reflected_schema(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """Every table's columns, keys, indexes and constraints, as plain comparable data.

    Columns are keyed by name, not position: SQLite appends an added column, so the order
    depends on which branch ran first, and Freight never reads a column by position.
    """
    inspector = sa.inspect(conn)
    tables: dict[str, dict[str, Any]] = {}
    for name in inspector.get_table_names():
        if name == "alembic_version":
            continue
        pk = inspector.get_pk_constraint(name)
        tables[name] = {
            "columns": {
                c["name"]: (str(c["type"]), c["nullable"], c.get("default"))
                for c in inspector.get_columns(name)
            },
            "primary_key": (pk.get("name"), tuple(pk["constrained_columns"])),
            "indexes": sorted(
                (
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(name)
                ),
                key=repr,
            ),
            "unique": sorted(
                (
                    (u["name"], tuple(u["column_names"]))
                    for u in inspector.get_unique_constraints(name)
                ),
                key=repr,
            ),
            "checks": sorted(
                ((c["name"], c["sqltext"]) for c in inspector.get_check_constraints(name)), key=repr
            ),
            "foreign_keys": sorted(
                (
                    (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                    for f in inspector.get_foreign_keys(name)
                ),
                key=repr,
            ),
        }
    return tables


@functools.cache
def declared_schema(dialect: str) -> dict[str, dict[str, Any]]:
    """`reflected_schema` of what schema.py builds with `create_all` on a fresh database."""
    if dialect == "sqlite":
        fresh: contextlib.AbstractContextManager[str] = contextlib.nullcontext("sqlite://")
    else:
        from tests.postgres import temporary_database

        fresh = temporary_database()
    with fresh as url:
        engine = sa.create_engine(url)
        try:
            schema.metadata.create_all(engine)
            with engine.connect() as conn:
                return reflected_schema(conn)
        finally:
            engine.dispose()


def assert_matches_schema_py(db: Database) -> None:
    assert drift(db) == []
    with db.read() as conn:
        assert reflected_schema(conn) == declared_schema(db.engine.dialect.name)


def insert_rows(db: Database) -> Inserted:
    """Insert ROWS into the tables the database has, in the columns each has."""
    inserted: Inserted = {}
    with db.write() as conn:
        existing = set(sa.inspect(conn).get_table_names())
        for name, rows in ROWS.items():
            if name not in existing:
                continue
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            inserted[name] = set(table.c.keys())
            for row in rows:  # one at a time: the rows name different columns
                conn.execute(table.insert(), {k: v for k, v in row.items() if k in table.c})
    return inserted


def backfilled(table: str, column: str) -> Any:
    """What a column added by a later revision holds in the rows that were there before it."""
    default = schema.metadata.tables[table].c[column].server_default
    if default is None:
        return None
    assert isinstance(default, sa.DefaultClause) and isinstance(default.arg, str)
    return schema.metadata.tables[table].c[column].type.python_type(default.arg)


def assert_rows_kept(db: Database, inserted: Inserted) -> None:
    """The inserted rows are all there, once, with their values; columns added since hold
    their server default (or NULL)."""
    with db.read() as conn:
        for name, columns_then in inserted.items():
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            keys = [k for k in dict.fromkeys(k for row in ROWS[name] for k in row) if k in table.c]
            expected = [
                tuple(
                    row[k] if k in row and k in columns_then else backfilled(name, k) for k in keys
                )
                for row in ROWS[name]
            ]
            stored = conn.execute(sa.select(*(table.c[k] for k in keys))).all()
            assert sorted(map(tuple, stored), key=repr) == sorted(expected, key=repr), name


def downgrade_to_exactly(db: Database, revision: str) -> None:
    """Step every other branch down (`HEAD@-1`, one revision of that branch) until the
    database is at `revision` alone, as a database that never left it."""
    keep = {r.revision for r in script().iterate_revisions(revision, "base")}
    for _ in range(len(list(script().walk_revisions()))):
        others = sorted(applied(db) - keep)
        if not others:
            break
        alembic(db, command.downgrade, f"{others[0]}@-1")
    assert applied(db) == {revision}


def test_there_is_one_head_and_it_reaches_every_revision_file() -> None:
    heads = script().get_heads()
    assert len(heads) == 1, f"{heads}: join them with `alembic merge` (docs/guides/development.md)"
    reachable = {Path(r.path) for r in script().iterate_revisions(heads[0], "base")}
    files = {p for p in (MIGRATIONS / "versions").glob("*.py") if p.name != "__init__.py"}
    assert files == reachable


def test_upgrade_head_builds_exactly_the_declared_schema(db: Database) -> None:
    alembic(db, command.upgrade, "head")  # every revision, from an empty database
    assert applied(db) == {script().get_current_head()}
    assert_matches_schema_py(db)


def test_a_new_database_gets_the_tables_upgrade_head_builds_without_replaying_it(
    db: Database, database_url: str
) -> None:
    """migrate() on an empty database creates schema.py's tables and records the one
    head; Alembic then treats it as any database at head (down to base and up again
    gives the same tables). A database at head opens without importing Alembic."""
    assert script().get_current_head() == HEAD_REVISION, "set db.HEAD_REVISION to the new head"
    db.migrate()
    assert applied(db) == {HEAD_REVISION}
    with db.read() as conn:
        built = reflected_schema(conn)
    alembic(db, command.downgrade, "base")
    with db.read() as conn:
        assert sa.inspect(conn).get_table_names() == ["alembic_version"]
    alembic(db, command.upgrade, "head")
    with db.read() as conn:
        assert reflected_schema(conn) == built
    assert_matches_schema_py(db)
    opened = subprocess.run(
        [sys.executable, "-c", OPEN_WITHOUT_ALEMBIC, database_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert opened.returncode == 0, opened.stderr


def test_the_drift_check_sees_a_missing_index_and_a_changed_default(db: Database) -> None:
    db.migrate()
    with db.write() as conn:
        ops = Operations(MigrationContext.configure(conn))
        ops.drop_index("ix_requests_claim_order", "requests")
        with ops.batch_alter_table("requests") as table:
            table.alter_column("admission_key", server_default="x")
    found = [d[0] if isinstance(d, tuple) else d[0][:4] for d in drift(db)]
    assert sorted(found, key=repr) == sorted(
        ["add_index", ("modify_default", None, "requests", "admission_key")], key=repr
    )
    with db.read() as conn:
        assert reflected_schema(conn) != declared_schema(db.engine.dialect.name)


@pytest.mark.parametrize(
    "first, second", [("0005_scheduling", "0011_upstream"), ("0011_upstream", "0005_scheduling")]
)
def test_both_changes_to_requests_give_the_declared_table_in_either_order(
    db: Database, first: str, second: str
) -> None:
    alembic(db, command.upgrade, first)
    alembic(db, command.upgrade, second)
    assert applied(db) == {first, second}
    inserted = insert_rows(db)
    db.migrate()
    assert_rows_kept(db, inserted)
    assert_matches_schema_py(db)


@pytest.mark.parametrize("old_head", sorted(OLD_HEADS))
def test_a_database_at_an_old_head_upgrades_keeping_its_rows(db: Database, old_head: str) -> None:
    alembic(db, command.upgrade, old_head)
    assert applied(db) == {old_head}
    inserted = insert_rows(db)
    assert {"files", "batches", "requests"} <= inserted.keys()

    db.migrate()
    assert applied(db) == {script().get_current_head()}
    assert_rows_kept(db, inserted)
    assert_matches_schema_py(db)


@pytest.mark.parametrize("old_head", sorted(OLD_HEADS))
def test_head_downgrades_to_an_old_head_and_back_up_keeping_its_rows(
    db: Database, old_head: str
) -> None:
    alembic(db, command.upgrade, old_head)
    with db.read() as conn:
        at_old_head = reflected_schema(conn)
    inserted = insert_rows(db)
    db.migrate()

    alembic(db, command.downgrade, old_head)
    assert applied(db) == OLD_HEADS[old_head]
    downgrade_to_exactly(db, old_head)
    with db.read() as conn:
        assert reflected_schema(conn) == at_old_head
    assert_rows_kept(db, inserted)

    db.migrate()
    assert applied(db) == {script().get_current_head()}
    assert_rows_kept(db, inserted)
    assert_matches_schema_py(db)


def test_downgrade_to_base_drops_every_table_and_upgrade_builds_them_again(db: Database) -> None:
    db.migrate()
    alembic(db, command.downgrade, "base")
    assert applied(db) == set()
    with db.read() as conn:
        assert sa.inspect(conn).get_table_names() == ["alembic_version"]
    db.migrate()
    assert_matches_schema_py(db)


def test_processes_upgrading_an_old_database_at_once_apply_each_revision_once(
    db: Database, database_url: str
) -> None:
    alembic(db, command.upgrade, "0008_usage")
    inserted = insert_rows(db)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, database_url],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], errors
    with db.read() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        assert list(versions) == [script().get_current_head()]
    assert_rows_kept(db, inserted)
    assert_matches_schema_py(db)


def package_data() -> list[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns: list[str] = pyproject["tool"]["setuptools"]["package-data"]["freight"]
    return patterns


def test_every_package_data_pattern_matches_a_file() -> None:
    package = REPO / "src" / "freight"
    assert [pattern for pattern in package_data() if not any(package.glob(pattern))] == []


def test_a_built_wheel_holds_every_migration_file(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(
        REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(project)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("freight-*.whl")
    migration_files = {
        f"freight/store/migrations/{p.relative_to(MIGRATIONS).as_posix()}"
        for p in MIGRATIONS.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert migration_files - set(zipfile.ZipFile(wheel).namelist()) == set()


def run_alembic_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_alembic_cli_works_from_the_checkout(tmp_path: Path) -> None:
    heads = run_alembic_cli("heads")
    assert heads.returncode == 0, heads.stderr
    assert heads.stdout.split() == [script().get_current_head(), "(head)"]

    no_database = run_alembic_cli("upgrade", "head")
    assert no_database.returncode != 0
    assert "-x url=" in no_database.stdout + no_database.stderr

    url = f"sqlite:///{tmp_path / 'dev.db'}"
    for args in (("upgrade", "head"), ("check",)):
        done = run_alembic_cli("-x", f"url={url}", *args)
        assert done.returncode == 0, done.stderr
    assert "No new upgrade operations detected" in done.stdout
