"""Settings for the whole site, read from the environment (django-environ).

Every setting has a default that runs the product on one machine with nothing installed beyond
Python: SQLite in the data directory, Celery's filesystem transport as the broker (a separate
worker process, no broker server), files on the local disk. Production points the same variables
at PostgreSQL, Redis and S3; see README.md.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE, WASM_UNSAFE_EVAL

from annotator.core import queues

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

DATA_DIR = Path(env.str("ANNOTATOR_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-development-key-change-me")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# The site's origin as clients reach it (scheme, host, port: https://annotator.example.org:8443):
# DICOMweb's absolute links (RetrieveURL, BulkDataURI) start with it. Empty: the request's Host.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "csp",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "annotator",
    "projects",
    "inference",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # after WhiteNoise: the pages get a Content-Security-Policy, the static files do not need one
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # last, as django-axes requires: turns a locked-out login into its 429 response
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "annotator.urls"
WSGI_APPLICATION = "annotator.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "annotator" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server's threads and the worker are separate connections writing one file.
    # - timeout: wait up to 30 s for the write lock instead of failing at once.
    # - IMMEDIATE: a transaction takes the write lock when it begins. SQLite's default (DEFERRED)
    #   starts it as a reader and upgrades at its first write; when another connection writes in
    #   between, the upgrade fails with "database is locked" at once, busy timeout or not.
    # - WAL: readers never wait for the writer, nor the writer for readers; synchronous=NORMAL is
    #   WAL's documented pairing (durable at each checkpoint rather than at every commit).
    # And the test database is a file the worker can open too.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
else:
    # Reuse each server thread's connection across requests (opening one costs more than a
    # claim); the health check replaces a connection the database dropped.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server-side binding lets PostgreSQL prepare the queries a connection repeats and reuse their
    # plans: a third of the database's CPU per claim. Behind a transaction-pooling PgBouncer, set
    # DATABASE_PREPARED_STATEMENTS=false.
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        options = DATABASES["default"].setdefault("OPTIONS", {})
        options.update(server_side_binding=True, prepare_threshold=5)
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Every app keeps its migration history in the top-level migrations/ package.
MIGRATION_MODULES = {app: f"migrations.{app}" for app in ("annotator", "projects", "inference")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# django-axes first: it refuses a locked-out username and address before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files: Django's own plus the Vite build of frontend/ (frontend/dist -> /static/).
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
FRONTEND_DIST = BASE_DIR / "frontend" / "dist"
STATICFILES_DIRS = [FRONTEND_DIST] if FRONTEND_DIST.is_dir() else []
# Serve straight from the apps and the front-end build too, so a server started without
# collectstatic (runserver, a test's live server) still has its assets.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# Vite names its build outputs by content (assets/NAME-HASH.ext): browsers may keep them for ever,
# so a returning annotator's workspace loads without re-fetching several MB of scripts.
WHITENOISE_IMMUTABLE_FILE_TEST = r"/assets/[^/]+-[\w-]{8}\.\w+$"

# Uploaded and derived files go through django-storages: the local disk by default, S3 (or any
# S3-compatible service) when AWS_STORAGE_BUCKET_NAME is set.
MEDIA_ROOT = Path(env.str("ANNOTATOR_MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "/media/"
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    _files_backend = {
        "BACKEND": "annotator.core.storage.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
            "location": env.str("AWS_LOCATION", default=""),
            "file_overwrite": False,
        },
    }
else:
    _files_backend = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": MEDIA_URL},
    }
STORAGES = {
    "default": _files_backend,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
MAX_UPLOAD_BYTES = env.int("ANNOTATOR_MAX_UPLOAD_BYTES", default=2 * 1024**3)
# Files of one request: a series must arrive whole, and real ones have thousands of slices.
MAX_UPLOAD_FILES = max(1, env.int("ANNOTATOR_MAX_UPLOAD_FILES", default=10_000))
# Django's own count is a backstop one past ours, which answers first and names the field.
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_UPLOAD_FILES + 1
# The limits are enforced as the body streams in, before the handlers that keep the files; a
# file on disk holds no descriptor until it is read (annotator.core.uploads).
FILE_UPLOAD_HANDLERS = [
    "annotator.core.uploads.LimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "annotator.core.uploads.TemporaryPathUploadHandler",
]
# Every image's declared size is checked against these before anything is allocated: voxels of
# one volume (NIfTI/NRRD/MHA upload, DICOM series, video), frames of one DICOM object or video.
MAX_IMAGE_VOXELS = env.int("ANNOTATOR_MAX_IMAGE_VOXELS", default=1024**3)
MAX_IMAGE_FRAMES = env.int("ANNOTATOR_MAX_IMAGE_FRAMES", default=10_000)
# What one label object (RTSTRUCT, DICOM SEG) or label map may hold: segments, ROIs or label
# values; and the points of all an RTSTRUCT's contours (annotator.imaging.dicom.labels.LabelLimits).
MAX_LABELS = env.int("ANNOTATOR_MAX_LABELS", default=256)
MAX_CONTOUR_POINTS = env.int("ANNOTATOR_MAX_CONTOUR_POINTS", default=10_000_000)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "annotator.core.auth.TokenAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "annotator.core.throttling.AnonThrottle",
        "annotator.core.throttling.UserThrottle",
    ],
    # Per client address (anon) and per user; far above what a person at the viewer sends (page
    # loads, job polls, autosaves, effort heartbeats: a few requests a second at peaks). DICOMweb
    # has its own budget: a compressed series loads frame by frame, hundreds of requests at once.
    # An empty rate switches a scope off.
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="120/min"),
        "user": env.str("API_THROTTLE_USER", default="3000/min"),
        "dicomweb": env.str("API_THROTTLE_DICOMWEB", default="12000/min"),
    },
    # Reverse proxies in front of the server that append the client to X-Forwarded-For: the
    # client address of the throttles and of the login lockout. 0: REMOTE_ADDR, the header is
    # ignored (a client could forge it).
    "NUM_PROXIES": env.int("DJANGO_NUM_PROXIES", default=0),
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's three, with a JSON body nested too deeply answered 400 (annotator/core/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "annotator.core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "annotator.core.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "annotator.core.rest.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lesion Annotator API",
    "DESCRIPTION": "Projects, rounds, tasks, lesions, versioned masks, reviews and AI jobs.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "annotator.openapi.responses_carry_every_field",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "projects.models.Role",
        "JobStateEnum": "inference.models.InferenceJob.State",
    },
}

# ---- Security: cache, login lockout, API tokens, Content-Security-Policy, TLS ----

# Shared by every server process (the API throttles' counts, EFFORT_CACHE): a folder in the data
# directory by default, Redis in production (CACHE_URL=redis://redis:6379/1).
CACHES = {"default": env.cache("CACHE_URL", default=f"filecache://{DATA_DIR / 'cache'}")}

# django-axes counts failed logins per (username, client address) pair, in the database, on
# every login path (the API token, the login form, the admin). Not per address alone: many
# annotators behind one hospital NAT share an address, and one person's typos (or a colleague
# guessing) must not lock the others out. Not per username alone: anyone on the internet could
# then lock any user out by guessing. A locked pair is refused, right password or not, until
# LOGIN_COOLOFF_SECONDS pass with no new failure (each failure while locked restarts the wait).
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("LOGIN_COOLOFF_SECONDS", default=900))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "annotator.core.auth.client_ip"
AXES_LOCKOUT_CALLABLE = "annotator.core.auth.lockout_response"

# API tokens (django-rest-knox): SHA-512 digests at rest, a fixed lifetime from their login.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env.float("API_TOKEN_TTL_HOURS", default=10)),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}

# The Content-Security-Policy of every page (django-csp). Inline <script> and <style> need the
# request's nonce ({{ request.csp_nonce }}); the viewer's codecs are WebAssembly and some of its
# workers come from blob: URLs. Swagger UI and ReDoc add their needs per view (annotator/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE, WASM_UNSAFE_EVAL],
        "style-src": [SELF, NONCE],
        # style="" attributes (Cornerstone's SVG annotations and text boxes set them): they can
        # restyle an element but neither run code nor read the page, unlike <style> elements
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# DJANGO_TLS=true: the site is served over HTTPS (by gunicorn itself or a proxy in front):
# cookies only over HTTPS, plain HTTP redirected, HSTS for DJANGO_HSTS_SECONDS (a year). Behind a
# proxy that terminates TLS, set DJANGO_NUM_PROXIES: the proxy's X-Forwarded-Proto then says
# whether the client's request was secure (the proxy must set it, overwriting the client's).
TLS = env.bool("DJANGO_TLS", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = TLS
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=365 * 24 * 3600) if TLS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = TLS
if TLS and REST_FRAMEWORK["NUM_PROXIES"]:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Celery. The default broker is kombu's filesystem transport in the data directory: a real
# separate worker process consumes it, and nothing else needs to run. Production: redis://...
_broker_dir = DATA_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://", "redis+socket://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A worker consuming "-Q gpu-interactive,gpu-batch" empties the queues in that order
        # (BRPOP on the keys in order) instead of round-robin: interactive prompts go first.
        "queue_order_strategy": "priority",
        # An unacknowledged message (its worker died) goes back to the queue after this many
        # seconds; it must exceed the longest task's hard time limit, or a slow task would be
        # delivered twice while it still runs (segmentation_run keeps only one result anyway).
        "visibility_timeout": 3600,
    }
# Per-deployment overrides, JSON: e.g. '{"visibility_timeout": 7200}' (tests make it short).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    **env.json("CELERY_BROKER_TRANSPORT_OPTIONS", default={}),
}
# Job state lives in the database (InferenceJob), so Celery keeps no results.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_DEFAULT_QUEUE = queues.DEFAULT
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A worker that loses its broker connection cancels its running tasks rather than finishing
# them: their messages are redelivered, and a second run must not race the first.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A running job's worker writes a heartbeat on it every JOB_HEARTBEAT_S; a job whose heartbeat
# is older than JOB_LOST_AFTER_S lost its worker and is re-queued, or failed after its last
# attempt (inference/recovery.py: on reading the job, every SWEEP_INTERVAL_S from `celery beat`,
# and `manage.py sweep`). A file written for a row that never committed is removed after
# ORPHAN_GRACE_S (longer than any save can take).
JOB_HEARTBEAT_S = env.float("ANNOTATOR_JOB_HEARTBEAT_S", default=5.0)
JOB_LOST_AFTER_S = env.float("ANNOTATOR_JOB_LOST_AFTER_S", default=30.0)
SWEEP_INTERVAL_S = env.float("ANNOTATOR_SWEEP_INTERVAL_S", default=15.0)
ORPHAN_GRACE_S = env.float("ANNOTATOR_ORPHAN_GRACE_S", default=3600.0)

# A PACS to pull studies from, over DICOMweb (QIDO-RS / WADO-RS); empty: none configured.
PACS_DICOMWEB_URL = env.str("PACS_DICOMWEB_URL", default="")
PACS_DICOMWEB_USERNAME = env.str("PACS_DICOMWEB_USERNAME", default="")
PACS_DICOMWEB_PASSWORD = env.str("PACS_DICOMWEB_PASSWORD", default="")

# The segmentation backend (inference/engine): an alias of inference.engine.base.BACKEND_ALIASES
# ("default": LiteMedSAM for colour and 2D images, the classical draft for volumes; "classical",
# "litemedsam", "medsam2") or a dotted path.
INFERENCE_BACKEND = env.str("INFERENCE_BACKEND", default="default")
# Pre-encoding (inference/encoding.py): when a task is claimed or a round pre-annotated, a
# gpu-batch job runs the image encoder of a backend that has one (LiteMedSAM) over the volume,
# so that the annotator's prompts run the decoder only.
INFERENCE_PRE_ENCODE = env.bool("INFERENCE_PRE_ENCODE", default=True)
# LiteMedSAM's slice embeddings on a worker's disk (4 MiB a slice; empty: memory only) and that
# folder's budget in MiB, least recently used volumes removed past it. The engine imports no
# Django and reads them from the environment: a Celery worker puts these values there when it
# starts (annotator/celery.py), so a worker started without them uses the data directory.
LITEMEDSAM_EMBEDDINGS_DIR = env.str(
    "LITEMEDSAM_EMBEDDINGS_DIR", default=str(DATA_DIR / "embeddings")
)
LITEMEDSAM_EMBEDDINGS_MB = env.float("LITEMEDSAM_EMBEDDINGS_MB", default=8192.0)
# MedSAM2 fine-tuning by the training job (inference/engine/medsam2/trainer.py): "recipe" (the
# published recipe, GPU workers) or "smoke" (two steps on small crops, CPU).
MEDSAM2_TRAIN_CONFIG = env.str("MEDSAM2_TRAIN_CONFIG", default="recipe")
# The MedSAM2 weights a worker loads ({"model": state_dict}), and the file a fine-tune starts
# from when the project's model is the site's default backend. The backend itself reads the
# environment (the engine imports no Django); the training job reads it here.
MEDSAM2_CHECKPOINT = env.str("MEDSAM2_CHECKPOINT", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # django-axes: failed logins and lockouts (WARNING), not every successful login (INFO)
        "axes": {"level": "WARNING"},
    },
}
