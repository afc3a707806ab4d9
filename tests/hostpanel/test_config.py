"""Settings parsing: DATABASE_URL, booleans, lists and the generated secret key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hostpanel.config import (
    env_bool,
    env_list,
    load_secret_key,
    parse_database_url,
    private_dir,
    private_sqlite_file,
)

BASE = Path("/srv/hostpanel")


def test_sqlite_relative_path_is_below_base_dir() -> None:
    db = parse_database_url("sqlite:///var/db.sqlite3", BASE)
    assert db == {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE / "var" / "db.sqlite3"}


def test_sqlite_absolute_path() -> None:
    assert parse_database_url("sqlite:////tmp/x.db", BASE)["NAME"] == Path("/tmp/x.db")


@pytest.mark.parametrize("url", ["sqlite://:memory:", "sqlite:///:memory:", "sqlite://"])
def test_sqlite_memory(url: str) -> None:
    assert parse_database_url(url, BASE)["NAME"] == ":memory:"


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_url(scheme: str) -> None:
    db = parse_database_url(f"{scheme}://hp:s%40cret@db.example:6543/hostpanel?sslmode=require", BASE)
    assert db == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "hostpanel",
        "USER": "hp",
        "PASSWORD": "s@cret",
        "HOST": "db.example",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require"},
    }


def test_postgres_defaults_port_and_needs_a_name() -> None:
    assert parse_database_url("postgres://db/hp", BASE)["PORT"] == ""
    with pytest.raises(ValueError, match="names no database"):
        parse_database_url("postgres://db/", BASE)


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported DATABASE_URL scheme"):
        parse_database_url("mysql://db/hp", BASE)


def test_env_bool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HP_TEST_FLAG", raising=False)
    assert env_bool("HP_TEST_FLAG") is False
    assert env_bool("HP_TEST_FLAG", default=True) is True
    for raw, want in [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False), ("", False)]:
        monkeypatch.setenv("HP_TEST_FLAG", raw)
        assert env_bool("HP_TEST_FLAG") is want
    monkeypatch.setenv("HP_TEST_FLAG", "maybe")
    with pytest.raises(ValueError):
        env_bool("HP_TEST_FLAG")


def test_env_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HP_TEST_LIST", raising=False)
    assert env_list("HP_TEST_LIST", ["a"]) == ["a"]
    monkeypatch.setenv("HP_TEST_LIST", " panel.example , ,10.0.0.1")
    assert env_list("HP_TEST_LIST", []) == ["panel.example", "10.0.0.1"]


def test_secret_key_generated_once_with_mode_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTPANEL_SECRET_KEY", raising=False)
    var = tmp_path / "var"
    key = load_secret_key(var)
    assert len(key) >= 50
    assert stat.S_IMODE((var / "secret_key").stat().st_mode) == 0o600
    assert load_secret_key(var) == key


def test_processes_starting_together_agree_on_one_whole_secret_key(tmp_path: Path) -> None:
    """`make run` starts several processes on a fresh var directory at once: each reads the key
    the first one made, never an empty or half-written file (a panel with an empty SECRET_KEY
    answered 500). Processes, not threads: each makes its own key and races to put it in place."""
    script = (
        "import sys; from pathlib import Path; from hostpanel.config import load_secret_key; "
        "print(load_secret_key(Path(sys.argv[1])))"
    )
    env = {k: v for k, v in os.environ.items() if k != "HOSTPANEL_SECRET_KEY"}
    for attempt in range(5):
        var = tmp_path / f"var{attempt}"
        starts = [
            subprocess.Popen([sys.executable, "-c", script, str(var)], stdout=subprocess.PIPE, env=env)
            for _ in range(8)
        ]
        keys = {p.communicate(timeout=60)[0].decode().strip() for p in starts}
        assert len(keys) == 1 and "" not in keys, keys
        assert keys == {(var / "secret_key").read_text().strip()}
        assert [p.name for p in var.iterdir()] == ["secret_key"]  # no temporary file left


def test_secret_key_from_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTPANEL_SECRET_KEY", "from-env")
    assert load_secret_key(tmp_path) == "from-env"
    assert not (tmp_path / "secret_key").exists()


def test_settings_defaults() -> None:
    from django.conf import settings

    assert settings.CELERY_TASK_SERIALIZER == "json"
    assert settings.CELERY_BROKER_URL == settings.REDIS_URL
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] == [settings.REDIS_URL]
    for app in ("tenants", "deployments", "hosts", "images", "api"):
        assert f"hostpanel.{app}" in settings.INSTALLED_APPS


def test_celery_app_is_exposed() -> None:
    import hostpanel

    assert hostpanel.celery_app.main == "hostpanel"
    assert hostpanel.celery_app.conf.task_serializer == "json"


def test_var_dir_and_sqlite_file_are_private_from_the_first_start(tmp_path: Path) -> None:
    """`manage.py migrate` on a fresh var dir under the usual umask 022: var 0700, db.sqlite3 0600."""
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "HOSTPANEL_SECRET_KEY")}
    env |= {"HOSTPANEL_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "hostpanel.settings"}
    manage = Path(__file__).resolve().parents[2] / "manage.py"
    subprocess.run(
        [sys.executable, str(manage), "migrate", "--no-input", "-v", "0"],
        env=env,
        check=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    db = var / "db.sqlite3"
    assert db.stat().st_size > 0 and stat.S_IMODE(db.stat().st_mode) == 0o600
    leftovers = [p for p in var.iterdir() if p.name.startswith("db.sqlite3")]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in leftovers)


def test_an_existing_world_readable_var_dir_and_database_are_tightened(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    os.chmod(var, 0o755)
    db = var / "db.sqlite3"
    db.write_bytes(b"")
    wal = var / "db.sqlite3-wal"
    wal.write_bytes(b"")
    for f in (db, wal):
        os.chmod(f, 0o644)
    private_dir(var)
    private_sqlite_file(db)
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and stat.S_IMODE(wal.stat().st_mode) == 0o600
