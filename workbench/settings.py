"""One settings module for every environment, driven by environment variables.

The defaults are the embedded single-machine set-up that `make run` starts: SQLite and a
filesystem Celery transport under the data folder, so no server process is needed.
"""
from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from workbench.env import env_bool, env_choice, env_device, env_float, env_int, env_list, env_path, env_paths, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env_path("WORKBENCH_DATA_DIR", BASE_DIR / "data")

# Where datasets, snapshots and results live (workbench/storage.py): `local` (the data folder; hosts
# must share it) or `s3://bucket/prefix` on any S3-compatible store, with the standard AWS_* variables.
# With a store, each host's data folder is a cache of it, bounded by WORKBENCH_CACHE_BYTES.
WORKBENCH_STORAGE = env_str("WORKBENCH_STORAGE", "local")
if not (WORKBENCH_STORAGE.strip() in ("", "local") or (WORKBENCH_STORAGE.startswith("s3://") and WORKBENCH_STORAGE[5:].strip("/"))):
    raise ImproperlyConfigured(f"WORKBENCH_STORAGE must be `local` or `s3://bucket/prefix`, not {WORKBENCH_STORAGE!r}")
WORKBENCH_CACHE_BYTES = env_int("WORKBENCH_CACHE_BYTES", 20 * 1024**3, minimum=0)
# Downloads redirect to a presigned URL of the store (the browser must reach it) instead of streaming through the web.
WORKBENCH_STORAGE_PRESIGNED = env_bool("WORKBENCH_STORAGE_PRESIGNED", False)
# A snapshot that cannot be uploaded (the store is unreachable) is retried this long before the job fails.
WORKBENCH_STORE_RETRY_SECONDS = env_int("WORKBENCH_STORE_RETRY_SECONDS", 600, minimum=1)

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and env_bool("WORKBENCH_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("SECRET_KEY must be set in production")
    # A per-data-folder key keeps sessions valid across restarts of the embedded set-up.
    _key_file = DATA_DIR / ".secret_key"
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if not _key_file.exists():
        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "workbench",
    "datasets",
    "networks",
    "jobs",
    "results",
    "compare",
    "workers",
    "sweeps",
    "pretrained",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "workbench.middleware.LoginRequiredMiddleware",
]

ROOT_URLCONF = "workbench.urls"
ASGI_APPLICATION = "workbench.asgi.application"
WSGI_APPLICATION = "workbench.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'workbench.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and tests share one file: WAL and immediate transactions avoid lock errors.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A process that stalls inside a transaction (swap, SIGSTOP, a hung client) would hold its row
    # locks for ever and block the take-back of its work: PostgreSQL ends such a session instead.
    _idle = env_int("WORKBENCH_DB_IDLE_TRANSACTION_SECONDS", 60, minimum=1)
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} -c idle_in_transaction_session_timeout={_idle * 1000}".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- static and uploaded files --------------------------------------------------------------
STATIC_URL = "static/"
# The container image collects static files into itself, off the shared data volume, so that an
# upgraded image serves its own files (see Dockerfile).
STATIC_ROOT = env_path("WORKBENCH_STATIC_ROOT", DATA_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing folder
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "workbench.staticfinders.PlotlyFinder",
]
WHITENOISE_USE_FINDERS = True

MAX_UPLOAD_BYTES = env_int("WORKBENCH_MAX_UPLOAD_BYTES", 2 * 1024**3, minimum=1024)
FILE_UPLOAD_HANDLERS = [
    "workbench.uploads.CappedUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "uploads")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
# The ASGI handler spools each request body before parsing; past this many bytes it goes to a file in
# FILE_UPLOAD_TEMP_DIR (workbench.asgi.SpoolingASGIHandler). Django would use FILE_UPLOAD_MAX_MEMORY_SIZE,
# and 0 there means "never roll over": every upload would sit in the web process's memory.
REQUEST_BODY_MEMORY_BYTES = env_int("WORKBENCH_REQUEST_BODY_MEMORY_BYTES", 1024**2, minimum=1)

# --- dataset ingest limits ------------------------------------------------------------------
WORKBENCH = {
    "MAX_ARCHIVE_MEMBERS": env_int("WORKBENCH_MAX_ARCHIVE_MEMBERS", 500_000, minimum=1),
    "MAX_EXTRACTED_BYTES": env_int("WORKBENCH_MAX_EXTRACTED_BYTES", 20 * 1024**3, minimum=1),
    "MAX_COMPRESSION_RATIO": env_int("WORKBENCH_MAX_COMPRESSION_RATIO", 200, minimum=1),
    "MAX_IMAGE_PIXELS": env_int("WORKBENCH_MAX_IMAGE_PIXELS", 40_000_000, minimum=1),
    "MAX_IMAGE_SIDE": env_int("WORKBENCH_MAX_IMAGE_SIDE", 1024, minimum=8),
    "SERVER_ROOTS": env_paths("WORKBENCH_SERVER_ROOTS", []),
    "INGEST_WORKERS": env_int("WORKBENCH_INGEST_WORKERS", 0),  # 0: one per CPU
}

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "EXCEPTION_HANDLER": "workbench.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "workbench.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # Token requests per client IP, so a password cannot be guessed at line rate. The count lives
    # in Django's cache: the default LocMemCache is per process, so each ASGI worker process
    # counts on its own (acceptable for now; a shared cache would make the limit exact).
    "DEFAULT_THROTTLE_RATES": {"token": env_str("WORKBENCH_TOKEN_RATE", "20/min")},
}
_count, _, _period = REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["token"].partition("/")  # type: ignore[index]
if not (_count.isdigit() and int(_count) > 0 and _period[:1] in ("s", "m", "h", "d")):  # DRF reads the first letter
    raise ImproperlyConfigured("WORKBENCH_TOKEN_RATE must read like 20/min (a count per second, minute, hour or day)")
# Downsampled curves of long runs each web process keeps (jobs.selectors.job_metrics_downsampled),
# each a few hundred KB.
WORKBENCH_CURVE_CACHE_ENTRIES = env_int("WORKBENCH_CURVE_CACHE_ENTRIES", 200, minimum=1)
SPECTACULAR_SETTINGS = {
    "TITLE": "Workbench API",
    "DESCRIPTION": "Datasets, networks and training jobs of the deep-learning workbench.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "DatasetStatusEnum": "datasets.models.Dataset.Status",
        "JobStatusEnum": "jobs.models.TrainingJob.Status",
        "WorkStatusEnum": "results.models.Status",
    },
    # drf-spectacular serves the schema and docs to anyone by default; login is required here.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = DATA_DIR / "broker"
CELERY_TASK_TIME_LIMIT = env_int("WORKBENCH_TASK_HARD_LIMIT", 7 * 24 * 3600, minimum=5)
# The embedded default is kombu's filesystem transport with atomic writes (workbench/broker.py).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "wbfs://")
EMBEDDED_BROKER = CELERY_BROKER_URL.startswith(("wbfs://", "filesystem://"))
if EMBEDDED_BROKER:
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # A worker looks for new messages this often: a listing of one folder, cheap enough to do
        # often, and it bounds how long a classify request waits to be picked up.
        "polling_interval": 0.05,
    }
else:
    # Redis re-delivers an unacked message after this long: keep it above any job's run time.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 3600}
# Results are kept only for request/response tasks (classify); training reports through the database.
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "")
if not CELERY_RESULT_BACKEND:
    if EMBEDDED_BROKER:
        (DATA_DIR / "task-results").mkdir(parents=True, exist_ok=True)
        CELERY_RESULT_BACKEND = f"workbench.broker:AtomicFilesystemBackend+file://{DATA_DIR / 'task-results'}"
    elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        CELERY_RESULT_BACKEND = f"workbench.broker:PolledRedisBackend+{CELERY_BROKER_URL}"
    else:
        CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Three kinds of capacity, each on workers of its own (`manage.py serve` and compose start one of
# each), so that none waits behind another: `train` (training jobs), `background` (ingest,
# evaluation, export, compression, batch classify, sweeps) and `infer` (serving: the requests a
# person waits on). SERVING_TASKS is the list the serving workers run.
SERVING_TASKS = ("jobs.classify", "jobs.augmentation_preview", "results.inspect", "results.classify_compressed")
CELERY_TASK_DEFAULT_QUEUE = "background"
CELERY_TASK_ROUTES = {
    "jobs.train": {"queue": "train"},
    **{name: {"queue": "infer"} for name in SERVING_TASKS},
    "datasets.*": {"queue": "background"},
    "results.*": {"queue": "background"},
    "jobs.*": {"queue": "background"},
    "sweeps.*": {"queue": "background"},
}
WORKER_ROLES = {"train": "train", "background": "background", "serving": "infer"}  # role → the queue it consumes
WORKER_QUEUES = ",".join(WORKER_ROLES.values())  # one worker for everything: tests, a small host
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- training --------------------------------------------------------------------------------
# Alias → backend class and options, as STORAGES and DATABASES map theirs.
TRAINING_BACKENDS = {
    "torch": {
        "BACKEND": "training.torch.backend.TorchBackend",
        "OPTIONS": {"threads": env_int("WORKBENCH_TORCH_THREADS", 0)},
    },
    # JAX + Flax NNX + Optax (training/jax): classification, on the CPU or a GPU jax finds.
    "jax": {"BACKEND": "training.jax.backend.JaxBackend", "OPTIONS": {}},
}
DEFAULT_TRAINING_BACKEND = "torch"
# --- recovery (workbench/leases.py, workbench/recovery.py) ---------------------------------------
# Running work writes a heartbeat this often; silent for HEARTBEAT_TIMEOUT, it is taken back and
# queued again (training resumes from its last snapshot), up to WORKBENCH_MAX_ATTEMPTS in a row.
HEARTBEAT_SECONDS = env_int("WORKBENCH_HEARTBEAT_SECONDS", 2, minimum=1)
HEARTBEAT_TIMEOUT = env_int("WORKBENCH_HEARTBEAT_TIMEOUT", 60, minimum=2)
WORKBENCH_MAX_ATTEMPTS = env_int("WORKBENCH_MAX_ATTEMPTS", 3, minimum=1)
# The most trials one sweep may run (a grid's size or a search's trials).
WORKBENCH_SWEEP_MAX_TRIALS = env_int("WORKBENCH_SWEEP_MAX_TRIALS", 100, minimum=1)
# A training job whose reports cannot be stored pauses and retries this long, then fails.
WORKBENCH_REPORT_RETRY_SECONDS = env_int("WORKBENCH_REPORT_RETRY_SECONDS", 120, minimum=1)
# --- serving (serving/) --------------------------------------------------------------------------
# A request a person waits on (classify, infer, inspect, previews) is answered within this many
# seconds or answered 503/504 saying why; unanswered after WORKBENCH_SERVING_RESEND_SECONDS it is
# sent once more (a serving worker that died took it with it).
WORKBENCH_SERVING_TIMEOUT = env_float("WORKBENCH_SERVING_TIMEOUT", 10, minimum=0.5, maximum=3600)
WORKBENCH_SERVING_RESEND_SECONDS = env_float("WORKBENCH_SERVING_RESEND_SECONDS", 4, minimum=0.5, maximum=3600)
# Models a serving worker keeps loaded between requests, least recently used dropped first.
WORKBENCH_SERVING_CACHE_MB = env_int("WORKBENCH_SERVING_CACHE_MB", 1024, minimum=0)
# Where it runs them: "cpu", or a GPU ("cuda:1"), shared with training (training's device leases do not bind it).
WORKBENCH_SERVING_DEVICE = env_device("WORKBENCH_SERVING_DEVICE", "cpu")
# Concurrent requests for one model run as one batch of up to this many images; after a batch
# with company, the next waits this long for more.
WORKBENCH_SERVING_MAX_BATCH = env_int("WORKBENCH_SERVING_MAX_BATCH", 64, minimum=1)
WORKBENCH_SERVING_BATCH_WINDOW_MS = env_float("WORKBENCH_SERVING_BATCH_WINDOW_MS", 2, minimum=0, maximum=1000)
# Requests one serving worker holds at once (threads; they mostly wait for their batch), and the
# torch threads each forward pass uses.
WORKBENCH_SERVING_CONCURRENCY = env_int("WORKBENCH_SERVING_CONCURRENCY", 32, minimum=1)
WORKBENCH_SERVING_THREADS = env_int("WORKBENCH_SERVING_THREADS", 1, minimum=1)
# The embedded broker's serving workers look for requests this often (a folder listing, ~0.2%
# of a core at 0.002 s); Redis delivers at once.
WORKBENCH_SERVING_POLL_SECONDS = env_float("WORKBENCH_SERVING_POLL_SECONDS", 0.002, minimum=0.0005, maximum=1)
# A worker for the train queue alone lowers its CPU priority by this much (nice, 0-19), so the web,
# the serving and the background workers on the same host answer at once while training goes on.
WORKBENCH_TRAIN_NICE = env_int("WORKBENCH_TRAIN_NICE", 10, minimum=0)
# Background workers (ingest, evaluation, export, compression, sweeps): how many run at once.
WORKBENCH_BACKGROUND_CONCURRENCY = env_int("WORKBENCH_BACKGROUND_CONCURRENCY", 2, minimum=1)
# Live updates: Redis pub/sub wakes the event stream when the broker is Redis; else it polls.
WORKBENCH_LIVE_REDIS_URL = env_str(
    "WORKBENCH_LIVE_REDIS_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "")
WORKBENCH_LIVE_POLL_SECONDS = 0.1
# A training split that fits in this fraction of a GPU's free memory is copied to the GPU once.
WORKBENCH_GPU_DATA_FRACTION = env_float("WORKBENCH_GPU_DATA_FRACTION", 0.5, minimum=0, maximum=1)
# The torch.compile backend a job with `compile` uses (training.torch.compile). Tests and
# benchmarks change it (an unknown name forces the eager fallback); deployments keep inductor.
WORKBENCH_COMPILE_BACKEND = env_str("WORKBENCH_COMPILE_BACKEND", "inductor")
# GPUs are held by one job at a time (workers.devices). CPU training processes share a host unless
# this caps how many train at once (0: no cap); a job asking for more waits in the queue.
WORKBENCH_CPU_SLOTS = env_int("WORKBENCH_CPU_SLOTS", 0, minimum=0)
# A job whose devices are busy waits this long on its worker, then goes to the back of the queue.
WORKBENCH_DEVICE_WAIT_SECONDS = env_int("WORKBENCH_DEVICE_WAIT_SECONDS", 5, minimum=1)
# A collective of a several-device job (DDP) that waits this long for a process fails the run.
WORKBENCH_DDP_TIMEOUT = env_int("WORKBENCH_DDP_TIMEOUT", 600, minimum=10)
# A training job records its worker's CPU, memory and GPU as `system` points this often.
WORKBENCH_SYSTEM_METRICS_SECONDS = env_int("WORKBENCH_SYSTEM_METRICS_SECONDS", 5, minimum=1)
# Each worker describes itself (host, queues, devices) this often; silent for three times it, it is stopped.
WORKBENCH_WORKER_REPORT_SECONDS = env_int("WORKBENCH_WORKER_REPORT_SECONDS", 5, minimum=1)

# --- production hardening (manage.py check --deploy) ----------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", LOG_LEVELS)},
}
