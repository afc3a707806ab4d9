"""Browser tests: Playwright drives Debian's chromium against the real stack.

One stack serves every test of this package (``scope="package"``, hence the
``__init__.py``: started by the first test that asks for it, stopped after the
last test here, so the rest of the suite never sees it):

- a private redis-server (tests/stack.py, shared with tests/hostpanel/e2e);
- the pytest-django test database, a *file* (settings: ``TEST["NAME"]``),
  shared by this process and the panel's servers through ``DATABASE_URL``;
  tests do not take ``db``/``transactional_db`` (nothing is rolled back or
  flushed between tests: use unique names); the database is flushed when the
  package ends;
- one host agent subprocess (``live_stack.agent``, name ``browser-h1``) with
  its own engine root and instance, bootstrapped with ``busybox:latest``, enrolled with the join
  command against the panel and running WITHOUT the database (its own Redis user, the internal
  API), as in production; the panel's periodic host checks (`manage.py watchhosts`) beside it;
- the panel as `make run` serves it (``hostpanel.serve``: Caddy in front of gunicorn for HTTP
  and daphne for /ws/) on a random port
  (``live_stack.url``), so pages, static files and WebSockets are the real ones;
- a real Caddy the agent configures (``live_stack.caddy``): an app with an
  ``http_port`` opens at ``live_stack.app_url(slug, app)`` (``*.localhost``).

Fixtures:

- ``live_stack``: a :class:`LiveStack`: ``url(path)``, ``agent``, and helpers
  that write through the services (``user``, ``tenant``, ``member``, ``token``,
  ``app``, ``replicas_of``) plus ``db()`` (a context in which this process may use
  the ORM) and ``wait_for``.
- ``browser``: chromium from /usr/bin/chromium, headless (Playwright makes a
  fresh temporary profile per launch; ``playwright install`` is never run).
- ``new_page()``: a page in a new browser context (own cookies), recording
  console messages (``console_of(page)``); ``page`` is one such page.
- ``login(page, user)``: signs ``user`` in through the login form (signing out
  whoever was signed in in that page's context).

Test modules import ``LiveStack``, ``StackUser`` and ``console_of`` from
``tests.browser.live`` (a test module cannot import a conftest).

Needs root (the agent runs real containers): skipped without it, a failure
under CI=true (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.test.utils import setup_databases, teardown_databases
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.live import LiveStack, StackUser, console_of, forget_console
from tests.conftest import require_privileged
from tests.stack import (
    AGENT_ARGS,
    Agent,
    Panel,
    caddy_server,
    celery_pointed_at,
    free_port,
    on_test_database,
    panel_env,
    redis_server,
    remove_agent_leftovers,
    shared_database_url,
    start_panel,
    start_without_database,
    stop_process,
    wait_for,
    watch_hosts,
)

CHROMIUM = "/usr/bin/chromium"
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every browser test is slow and privileged (it runs real containers)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.privileged)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _ensure_test_database() -> Any:
    """Switch to the test database; returns what to tear down when we had to create it here.

    pytest-django creates the test database only when some collected test asks for ``db``
    (a run of the whole suite does); the browser tests never do, so run alone they would
    otherwise point daphne and the agent at the *real* database (var/db.sqlite3).
    """
    if on_test_database():
        return None  # pytest-django set it up for the rest of the suite
    return setup_databases(verbosity=0, interactive=False, aliases={"default"})


@pytest.fixture(scope="package")
def live_stack(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    """Redis, a host agent and the panel (as `make run` serves it) on a random port, sharing the
    file test database."""
    require_privileged()
    from django.conf import settings
    from django.core.management import call_command

    workdir = tmp_path_factory.mktemp("browser-stack")
    with django_db_blocker.unblock():
        own_test_db = _ensure_test_database()
        database_url = shared_database_url()
    old_keys = settings.HOSTPANEL_SECRET_KEYS
    settings.HOSTPANEL_SECRET_KEYS = Fernet.generate_key().decode()
    server: subprocess.Popen[bytes] | None = None
    agent: Agent | None = None
    try:
        with (
            redis_server(workdir) as redis_url,
            celery_pointed_at(redis_url),
            caddy_server(workdir / "caddy") as caddy,
            ExitStack() as stack,
        ):
            env = panel_env(database_url, redis_url, workdir / "var", settings.HOSTPANEL_SECRET_KEYS)
            env |= {"HOSTPANEL_SECRET_KEY": secrets.token_urlsafe(40), "HOSTPANEL_DEBUG": "0"}
            port = free_port()
            server_log = workdir / "panel.log"
            server = start_panel("127.0.0.1", port, env, server_log)
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _answers(base + "/healthz"), 60, f"the panel on {base}\n{server_log}")
            panel = Panel(base, None, env, server_log)  # joined over plain HTTP on loopback (tests only)
            stack.enter_context(watch_hosts(panel))
            with django_db_blocker.unblock():
                agent = start_without_database(
                    panel,
                    "browser-h1",
                    workdir,
                    *AGENT_ARGS,
                    env={"HOSTPANEL_CADDY_ADMIN": ""} | caddy.agent_env(base),
                )

            def host_up() -> bool:
                from hostpanel.hosts.models import Host

                with django_db_blocker.unblock():
                    return Host.objects.filter(name="browser-h1", state="up").exists()

            wait_for(host_up, 60, f"the host agent to register\n{agent.log_tail()}")
            yield LiveStack(base, agent, django_db_blocker.unblock, workdir, server_log, caddy)
    finally:
        if agent is not None:
            agent.stop()
            remove_agent_leftovers(agent)
        stop_process(server)
        settings.HOSTPANEL_SECRET_KEYS = old_keys
        with django_db_blocker.unblock():
            if own_test_db is not None:
                teardown_databases(own_test_db, verbosity=0)
            else:
                call_command("flush", interactive=False, verbosity=0)  # the rest of the suite starts empty


@pytest.fixture(scope="package")
def browser(live_stack: LiveStack) -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing; `make install` installs the chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; Django's async-safety check would
    # refuse the ORM calls the helpers make between browser calls. Only while the browser runs.
    unsafe_before = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if unsafe_before is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = unsafe_before


@pytest.fixture
def new_page(browser: Any, live_stack: LiveStack) -> Iterator[Callable[[], Any]]:
    """Open pages, each in its own browser context (own cookies); all closed after the test."""
    contexts: list[Any] = []

    def make() -> Any:
        context = browser.new_context(base_url=live_stack.base_url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        log = console_of(page)
        page.on("console", lambda message: log.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
        return page

    yield make
    for context in contexts:
        for page in context.pages:
            forget_console(page)
        context.close()


@pytest.fixture
def page(new_page: Callable[[], Any]) -> Any:
    """One page in a fresh browser context."""
    return new_page()


@pytest.fixture
def login(live_stack: LiveStack) -> Callable[[Any, StackUser], None]:
    """``login(page, user)``: sign ``user`` in through the login form and land on the start page."""

    def sign_in(page: Any, user: StackUser) -> None:
        page.context.clear_cookies()  # whoever was signed in in this context before
        page.goto(live_stack.url("/login/"))
        page.fill("#id_username", user.username)
        page.fill("#id_password", user.password)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_url(lambda url: "/login/" not in url, timeout=10_000)
        if "/login/" in page.url:
            said = page.locator("main").inner_text()
            raise AssertionError(f"login of {user.username} failed: still on {page.url}: {said}")

    return sign_in
