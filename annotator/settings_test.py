"""The test override: fast password hashing, inline Celery unless a test starts a worker."""

import os

from annotator.settings import *  # noqa: F403
from annotator.settings import DATA_DIR, DATABASES

# Concurrent test runs on one machine each get their own SQLite test database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-db-{os.getpid()}.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = False
# One process (the live server is a thread of it): an in-memory cache, emptied before each test
# (tests/conftest.py), so throttle counts do not carry over from test to test or run to run.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# No encoding job after every claim and pre-annotation of every test: the tests of
# inference/encoding.py turn it on.
INFERENCE_PRE_ENCODE = False
