"""Browser tests: Python Playwright driving Debian's Chromium against pytest-django's live server.

Chromium comes from apt (``apt-get install chromium``; ``.ci/run`` installs it), never from
``playwright install``. Without it the tests skip, or fail under ``REQUIRE_SERVICES=1``.
Screenshots of every page visited go to ``test-output/screenshots/`` for review.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from tests.conftest import need_service

CHROMIUM = Path(os.environ.get("MODELYARD_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module. Module-scoped, so that Playwright's loop and the
    ``DJANGO_ALLOW_ASYNC_UNSAFE`` it needs end with the module: Playwright's sync API keeps an
    asyncio loop running in this thread, and Django would refuse ORM calls from the (synchronous)
    test body without it; other tests, and the subprocesses they start (``check --deploy``
    rejects that variable), never see it."""
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need_service(False, "playwright (pip install -e '.[dev]')")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def visit(browser, live_server):
    """``page = visit(user)``: a fresh browser tab signed in as ``user`` (or anonymous for None)."""
    contexts = []

    def _open(user, *, width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height}, base_url=live_server.url)
        context.set_default_timeout(10_000)
        if user is not None:
            session = SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.save()
            host = live_server.url.split("//", 1)[1].split(":")[0]
            context.add_cookies(
                [
                    {
                        "name": settings.SESSION_COOKIE_NAME,
                        "value": session.session_key,
                        "domain": host,
                        "path": "/",
                    }
                ]
            )
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        return page

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture
def shot():
    """``shot(page, "catalog")`` saves a full-page screenshot for review."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def _shot(page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return _shot
