"""Signing in and the site's defences: the lockout after repeated failed logins (django-axes) on
the login form, the admin's login and the token endpoint; expiring, revocable API tokens
(django-rest-knox); the API's throttles, shared by the server's processes; the security headers.
"""

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.core.cache.backends.redis import RedisCache
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.support.servers import free_port, wait_for
from tests.support.worker import REPO, database_url

LIMIT = 5
COOLOFF_S = 2


@pytest.fixture
def short_lockout(settings: Any) -> None:
    """Locked after LIMIT failures, for COOLOFF_S seconds from the last one."""
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(seconds=COOLOFF_S)


def wait_out_the_cooloff() -> None:
    time.sleep(COOLOFF_S + 0.3)


def form_login(
    session: requests.Session,
    base: str,
    username: str,
    password: str,
    path: str = "/accounts/login/",
) -> requests.Response:
    """Signs in through the real form, as a browser does: its page first (the CSRF cookie and
    token), then the POST."""
    page = session.get(base + path)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match is not None, page.text[:500]
    form = {"csrfmiddlewaretoken": match.group(1), "username": username, "password": password}
    return session.post(base + path, data={**form, "next": "/"}, allow_redirects=False)


def token_login(base: str, username: str, password: str) -> requests.Response:
    return requests.post(
        f"{base}/api/auth/token/", data={"username": username, "password": password}, timeout=30
    )


# ---- lockout ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_login_form_locks_out_after_repeated_failures(
    live_server: Any, make_user: Callable[..., Any], short_lockout: None
) -> None:
    base = live_server.url
    make_user("alice")
    make_user("bob")
    browser = requests.Session()
    no_csrf = requests.post(f"{base}/accounts/login/", data={"username": "alice", "password": "x"})
    assert no_csrf.status_code == 403  # the form is the real one, CSRF and all

    statuses = [form_login(browser, base, "alice", f"wrong-{i}").status_code for i in range(20)]
    assert statuses == [200] * (LIMIT - 1) + [429] * (20 - LIMIT + 1)
    right = form_login(browser, base, "alice", "pw-alice")
    assert right.status_code == 429
    assert right.headers["Content-Type"].startswith("text/html")
    assert right.headers["Retry-After"] == str(COOLOFF_S)
    assert "Too many sign-in attempts" in right.text and f"{COOLOFF_S} seconds" in right.text
    assert "sessionid" not in browser.cookies
    # the admin's login form is behind the same lockout, and so is the token endpoint
    admin = form_login(requests.Session(), base, "alice", "pw-alice", "/admin/login/")
    assert admin.status_code == 429
    assert token_login(base, "alice", "pw-alice").status_code == 429
    # per username and address: a colleague behind the same address signs in
    assert form_login(requests.Session(), base, "bob", "pw-bob").status_code == 302

    wait_out_the_cooloff()
    right = form_login(browser, base, "alice", "pw-alice")
    assert right.status_code == 302 and right.headers["Location"] == "/"
    assert browser.get(f"{base}/api/me/").json()["username"] == "alice"


@pytest.mark.django_db(transaction=True)
def test_the_token_endpoint_locks_out_after_repeated_failures(
    live_server: Any, make_user: Callable[..., Any], short_lockout: None
) -> None:
    base = live_server.url
    make_user("carol")
    make_user("dave")
    statuses = [token_login(base, "carol", f"wrong-{i}").status_code for i in range(20)]
    assert statuses == [400] * (LIMIT - 1) + [429] * (20 - LIMIT + 1)
    right = token_login(base, "carol", "pw-carol")
    assert right.status_code == 429
    assert right.headers["Retry-After"] == str(COOLOFF_S)
    assert right.json() == {
        "detail": "Too many failed logins for this username from your address: "
        f"try again in {COOLOFF_S} seconds.",
        "retry_after": COOLOFF_S,
    }
    # the same pair on the login form is locked too; another username is not
    assert form_login(requests.Session(), base, "carol", "pw-carol").status_code == 429
    assert token_login(base, "dave", "pw-dave").status_code == 200

    wait_out_the_cooloff()
    right = token_login(base, "carol", "pw-carol")
    assert right.status_code == 200
    me = requests.get(
        f"{base}/api/me/", headers={"Authorization": f"Token {right.json()['token']}"}, timeout=30
    )
    assert me.json()["username"] == "carol"


@pytest.mark.django_db
def test_a_success_before_the_limit_clears_the_count(
    make_user: Callable[..., Any], short_lockout: None
) -> None:
    """A person's typos do not add up over the day: signing in clears them."""
    make_user("erin")
    client = APIClient()
    for _ in range(2):
        for i in range(LIMIT - 1):
            wrong = client.post("/api/auth/token/", {"username": "erin", "password": f"x{i}"})
            assert wrong.status_code == 400
        right = client.post("/api/auth/token/", {"username": "erin", "password": "pw-erin"})
        assert right.status_code == 200


@pytest.mark.django_db
def test_the_lockout_address_is_not_taken_from_a_forged_header(
    make_user: Callable[..., Any], short_lockout: None, settings: Any
) -> None:
    """Without a proxy (DJANGO_NUM_PROXIES=0) X-Forwarded-For is ignored: a new forged address
    per try does not escape the lockout. Behind one proxy, the address it appended counts."""
    make_user("nora")

    def login(forwarded_for: str, password: str = "wrong") -> int:
        body = {"username": "nora", "password": password}
        response = APIClient().post("/api/auth/token/", body, HTTP_X_FORWARDED_FOR=forwarded_for)
        return response.status_code

    statuses = [login(f"198.51.100.{i}") for i in range(LIMIT + 1)]
    assert statuses == [400] * (LIMIT - 1) + [429] * 2
    assert login("198.51.100.99", "pw-nora") == 429

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    # the client put a forged address first; the proxy appended the real one
    assert login("10.0.0.1, 203.0.113.7", "pw-nora") == 200
    assert [login(f"10.0.0.{i}, 203.0.113.8") for i in range(LIMIT)][-1] == 429
    assert login("203.0.113.7", "pw-nora") == 200  # another client behind the same proxy


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "pw"}, "username"),
        ({"username": "erin"}, "password"),
        ({"username": "erin", "password": ["pw", "pw"]}, "password"),
        ({"username": "e" * 151, "password": "pw"}, "username"),
    ],
)
def test_the_token_endpoint_names_the_bad_field(body: dict[str, Any], field: str) -> None:
    response = APIClient().post("/api/auth/token/", body, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {field}


# ---- tokens -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_tokens_expire_with_a_clear_message_and_a_new_login_works(
    make_user: Callable[..., Any], settings: Any
) -> None:
    user = make_user("frank")
    default = APIClient().post("/api/auth/token/", {"username": "frank", "password": "pw-frank"})
    lifetime = datetime.fromisoformat(default.json()["expiry"]) - timezone.now()
    assert timedelta(hours=9, minutes=59) < lifetime <= timedelta(hours=10)  # the default

    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(seconds=1)}
    client = APIClient()
    token = client.post("/api/auth/token/", {"username": "frank", "password": "pw-frank"}).json()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token['token']}")
    assert client.get("/api/me/").json()["username"] == "frank"
    time.sleep(1.2)
    for path in ("/api/me/", "/api/me/", "/dicomweb/studies"):  # it stays "expired"
        response = client.get(path)
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"] == "Token"
        detail = response.json()["detail"]
        assert detail.startswith("Token expired at ") and "POST /api/auth/token/" in detail

    fresh = client.post("/api/auth/token/", {"username": "frank", "password": "pw-frank"})
    client.credentials(HTTP_AUTHORIZATION=f"Token {fresh.json()['token']}")
    assert client.get("/api/me/").json()["username"] == "frank"
    # the login removed the expired ones; the default-lifetime token is still there
    assert AuthToken.objects.filter(user=user).count() == 2


@pytest.mark.django_db
def test_tokens_are_kept_as_digests_and_can_be_revoked(make_user: Callable[..., Any]) -> None:
    make_user("gina")
    login = {"username": "gina", "password": "pw-gina"}
    first, second, third = (APIClient().post("/api/auth/token/", login).json() for _ in range(3))
    digests = set(AuthToken.objects.values_list("digest", flat=True))
    sha512 = {hashlib.sha512(t["token"].encode()).hexdigest() for t in (first, second, third)}
    assert digests == sha512
    assert not AuthToken.objects.filter(digest__in=[first["token"], second["token"]]).exists()

    def client(token: dict[str, Any]) -> APIClient:
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Token {token['token']}")
        return c

    assert client(first).post("/api/auth/logout/").status_code == 204
    refused = client(first).get("/api/me/")
    assert refused.status_code == 401 and refused.json() == {"detail": "Invalid token."}
    assert client(second).get("/api/me/").status_code == 200
    assert client(second).post("/api/auth/logoutall/").status_code == 204
    assert client(second).get("/api/me/").status_code == 401
    assert client(third).get("/api/me/").status_code == 401
    assert not AuthToken.objects.exists()


@pytest.mark.django_db
def test_a_signed_in_browser_revokes_every_token_of_its_user(
    make_user: Callable[..., Any],
) -> None:
    user = make_user("hana")
    AuthToken.objects.create(user=user)
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.post("/api/auth/logoutall/").status_code == 403  # no CSRF token
    browser.get("/")  # the app page sets the CSRF cookie, as in the browser
    csrf = browser.cookies["csrftoken"].value
    assert browser.post("/api/auth/logoutall/", HTTP_X_CSRFTOKEN=csrf).status_code == 204
    assert not AuthToken.objects.filter(user=user).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    ["Token", "Token a b", "Token \xff\xfe\xfd", "Token " + "0" * 5000, "Token 12345"],
)
def test_malformed_tokens_are_refused_not_crashed(header: str) -> None:
    response = Client().get("/api/me/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Token"
    assert set(response.json()) == {"detail"}


# ---- throttling ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_throttles_answer_429_over_the_limit(
    make_user: Callable[..., Any], settings: Any, client_for: Callable[[Any], APIClient]
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "3/min", "user": "5/min", "dicomweb": "8/min"},
    }
    heavy, other = client_for(make_user("ivan")), client_for(make_user("jane"))
    assert [heavy.get("/api/me/").status_code for _ in range(7)] == [200] * 5 + [429] * 2
    refused = heavy.get("/api/me/")
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("Request was throttled.")
    assert other.get("/api/me/").status_code == 200  # per user
    # DICOMweb has its own budget (a series loads frame by frame)
    assert [heavy.get("/dicomweb/studies").status_code for _ in range(9)] == [200] * 8 + [429]
    # without a user: per address, on the public routes
    anonymous = APIClient()
    assert [anonymous.get("/api/schema/").status_code for _ in range(4)] == [200] * 3 + [429]


@pytest.mark.django_db
def test_the_default_rates_leave_a_busy_annotator_alone(
    make_user: Callable[..., Any], client_for: Callable[[Any], APIClient]
) -> None:
    """Far more than a person at the viewer sends in a minute: no 429."""
    client = client_for(make_user("kate"))
    assert {client.get("/api/me/").status_code for _ in range(600)} == {200}
    assert {client.get("/dicomweb/studies").status_code for _ in range(1500)} == {200}


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """Starts gunicorn (as production runs it, on the test database) with extra environment
    variables; returns its base URL and its access log (each line: the serving process id)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(workers: int, **env: str) -> tuple[str, Path]:
        port = free_port()
        log = tmp_path / f"access-{port}.log"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "annotator.settings",
            "DATABASE_URL": database_url(),
            "ANNOTATOR_DATA_DIR": str(tmp_path / "data"),
            **env,
        }
        command = [sys.executable, "-m", "gunicorn", "annotator.wsgi", "--workers", str(workers)]
        command += ["--bind", f"127.0.0.1:{port}", "--access-logfile", str(log)]
        command += ["--access-logformat", "%(p)s %(s)s"]
        process = subprocess.Popen(command, cwd=REPO, env=environment)
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/accounts/login/", process=process, timeout=90, request_timeout=30)
        return base, log

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def shared_cache_url(*stale_keys: str) -> str:
    """Redis where the tests have it (PostgreSQL + Redis runs), else "" for the default (a
    folder in the server's data directory). ``stale_keys``: deleted from Redis first (a user id
    of an earlier run's test database may come again)."""
    broker = str(django_settings.CELERY_BROKER_URL)
    if not broker.startswith(("redis://", "rediss://")):
        return ""
    RedisCache(broker, {}).delete_many(list(stale_keys))
    return broker


@pytest.mark.django_db(transaction=True)
def test_throttle_counts_are_shared_by_the_server_processes(
    make_user: Callable[..., Any], gunicorn: Callable[..., tuple[str, Path]]
) -> None:
    """Three clients at once on three worker processes: the limit holds for them together.

    Per-process counts would let each process allow 12 (all 30 pass). DRF's throttle reads and
    writes its count without a lock, so two requests at the same instant may both pass: a
    little over 12 is possible, never 30.
    """
    user = make_user("liam")
    _, token = AuthToken.objects.create(user=user)
    cache = shared_cache_url(f"throttle_user_{user.pk}")
    base, log = gunicorn(3, API_THROTTLE_USER="12/min", **({"CACHE_URL": cache} if cache else {}))
    headers = {"Authorization": f"Token {token}", "Connection": "close"}

    def client(_: int) -> list[int]:
        return [
            requests.get(f"{base}/api/me/", headers=headers, timeout=30).status_code
            for _ in range(10)
        ]

    with ThreadPoolExecutor(3) as pool:
        statuses = [status for run in pool.map(client, range(3)) for status in run]
    assert set(statuses) == {200, 429}
    assert 12 <= statuses.count(200) <= 15, statuses
    served_by = {line.split()[0] for line in log.read_text().splitlines()[-30:]}
    assert len(served_by) >= 2, "one process served every request: nothing shared was tested"


# ---- headers ------------------------------------------------------------------------------


def policy_directives(policy: str) -> dict[str, list[str]]:
    parts = [d.split() for d in policy.split(";") if d.strip()]
    return {name: values for name, *values in parts}


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy(make_user: Callable[..., Any]) -> None:
    client = Client()
    login = client.get("/accounts/login/")
    policy = login["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None and f'<style nonce="{nonce.group(1)}">' in login.content.decode()
    for directive in ("default-src 'self'", "object-src 'none'", "frame-ancestors 'none'"):
        assert directive in policy
    directives = policy_directives(policy)
    for name in ("script-src", "style-src"):  # inline code and <style> only by nonce
        assert "'unsafe-inline'" not in directives[name] and "'unsafe-eval'" not in directives[name]
    assert directives["style-src-attr"] == ["'unsafe-inline'"]  # style="" attributes

    client.force_login(make_user("mia"))
    app = client.get("/")
    assert app.status_code == 200
    assert "script-src 'self'" in app["Content-Security-Policy"]
    assert "'wasm-unsafe-eval'" in app["Content-Security-Policy"]  # the viewer's codecs
    docs = client.get("/api/docs/")
    nonce = re.search(r"'nonce-([^']+)'", docs["Content-Security-Policy"])
    assert nonce is not None
    assert docs.content.decode().count(f'nonce="{nonce.group(1)}"') == 2  # its style, its script
    redoc = client.get("/api/redoc/")
    assert policy_directives(redoc["Content-Security-Policy"])["style-src"] == [
        "'self'",
        "'unsafe-inline'",
    ]
    assert "fonts.googleapis.com" not in redoc.content.decode()
    assert "Content-Security-Policy" in client.get("/admin/login/")


def check_deploy(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotator.settings",
        "DJANGO_SECRET_KEY": "a-long-random-production-key-" + "x7Qp2" * 10,
        "DJANGO_ALLOWED_HOSTS": "annotator.example.org",
        **env,
    }
    command = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True)


def test_one_variable_switches_on_the_tls_settings(tmp_path: Path) -> None:
    plain = check_deploy(ANNOTATOR_DATA_DIR=str(tmp_path))
    assert plain.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):
        assert f"security.{warning}" in plain.stderr + plain.stdout, warning
    tls = check_deploy(ANNOTATOR_DATA_DIR=str(tmp_path), DJANGO_TLS="true")
    assert tls.returncode == 0, tls.stderr + tls.stdout
    assert "no issues" in tls.stdout
