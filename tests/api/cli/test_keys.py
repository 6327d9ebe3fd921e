"""``farm migrate`` and ``farm keys create|list|revoke`` against a database of their own."""

import os

import psycopg

from models.db import libpq_url, session_scope
from models.keys import find_active_key
from tests.api.cli.conftest import run_farm


def operator_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "FARM_DATABASE_URL": database_url}


def test_migrate_then_create_list_and_revoke_keys(empty_database: str) -> None:
    env = operator_env(empty_database)

    migrated = run_farm("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    with psycopg.connect(libpq_url(empty_database)) as connection:
        assert connection.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)

    created = [run_farm("keys", "create", "--name", name, env=env) for name in ("ci", "laptop")]
    assert all(result.returncode == 0 for result in created), [result.stderr for result in created]
    ci_key, laptop_key = (result.stdout.strip() for result in created)
    assert ci_key.startswith("farm_") and "not shown again" in created[0].stderr
    with session_scope(empty_database) as session:
        ci_row, laptop_row = find_active_key(session, ci_key), find_active_key(session, laptop_key)
        assert ci_row is not None and laptop_row is not None
        ci_id, laptop_id = ci_row.id, laptop_row.id

    listed = run_farm("keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "ci" in listed.stdout and "laptop" in listed.stdout
    assert f"{ci_key[:9]}…" in listed.stdout and ci_key not in listed.stdout  # the prefix, never the key

    by_prefix = run_farm("keys", "revoke", f"{ci_key[:9]}…", env=env)  # pasted from the list
    by_id = run_farm("keys", "revoke", str(laptop_id), env=env)
    assert by_prefix.returncode == 0 and f"revoked key {ci_id} 'ci'" in by_prefix.stdout
    assert by_id.returncode == 0 and f"revoked key {laptop_id} 'laptop'" in by_id.stdout
    with session_scope(empty_database) as session:
        assert find_active_key(session, ci_key) is None and find_active_key(session, laptop_key) is None

    unknown = run_farm("keys", "revoke", "farm_none", env=env)
    assert unknown.returncode == 1 and "no API key has id or prefix 'farm_none'" in unknown.stderr


def test_keys_against_an_unmigrated_database_say_to_migrate(empty_database: str) -> None:
    result = run_farm("keys", "create", "--name", "x", env=operator_env(empty_database))

    assert result.returncode == 1
    assert '"api_keys" does not exist' in result.stderr and "Run farm migrate" in result.stderr


def test_keys_carry_limits_and_the_admin_role_and_set_changes_them(empty_database: str) -> None:
    env = operator_env(empty_database)
    assert run_farm("migrate", env=env).returncode == 0

    created = run_farm(
        "keys", "create", "--name", "ops", "--admin", "--rate-limit", "100", "--max-unfinished", "3",
        "--monthly-spend-cap", "25", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert "Created admin key 'ops'" in created.stderr
    with session_scope(empty_database) as session:
        row = find_active_key(session, key)
        assert row is not None and row.is_admin
        assert (row.rate_limit_per_minute, row.max_unfinished, row.monthly_spend_cap_usd) == (100, 3, 25.0)
        key_id = row.id

    listed = run_farm("keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if f"{key[:9]}…" in line)
    assert all(shown in line for shown in ("100/min", "3", "$25.00", "admin")), line

    changed = run_farm(
        "keys", "set", f"{key[:9]}…", "--rate-limit", "default", "--monthly-spend-cap", "none", "--no-admin", env=env
    )
    assert changed.returncode == 0, changed.stderr
    assert f"key {key_id} 'ops': rate default, unfinished 3, spend cap none, not admin" in changed.stdout
    with session_scope(empty_database) as session:
        row = find_active_key(session, key)
        assert row is not None and not row.is_admin
        assert (row.rate_limit_per_minute, row.max_unfinished, row.monthly_spend_cap_usd) == (None, 3, None)

    bad = run_farm("keys", "set", str(key_id), "--max-unfinished", "0", env=env)
    assert bad.returncode == 1 and "--max-unfinished '0': must be at least 1, or default" in bad.stderr
    nothing = run_farm("keys", "set", str(key_id), env=env)
    assert nothing.returncode == 1 and "nothing to change" in nothing.stderr
    refused = run_farm("keys", "create", "--name", "x", "--rate-limit", "0", env=env)
    assert refused.returncode == 2 and "--rate-limit" in refused.stderr  # typer's own range check
