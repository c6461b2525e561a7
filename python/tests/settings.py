"""Django settings for the upsert_counter_django tests: a real PostgreSQL
server given by PGHOST/PGPORT/PGUSER (make test starts one)."""
import os

SECRET_KEY = "upsert-counter-tests"
USE_TZ = True
TIME_ZONE = "America/New_York"
INSTALLED_APPS = ["upsert_counter_django", "abtest"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
_db = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": os.environ.get("UC_DJANGO_DB", "upsert_counter_django"),
    # a separate test database per mode: the SQL-mode run must not find the extension
    "TEST": {"NAME": "test_upsert_counter_django" + ("_sql" if os.environ.get("UC_DJANGO_NO_EXTENSION") else "")},
    "USER": os.environ.get("PGUSER", "postgres"),
    "HOST": os.environ.get("PGHOST", ""),
    "PORT": os.environ.get("PGPORT", ""),
}
if os.environ.get("UC_DJANGO_SERVER_SIDE_BINDING"):    # psycopg 3 with Django 4.2+
    _db["OPTIONS"] = {"server_side_binding": True}
DATABASES = {
    "default": dict(_db),
    # a second alias for the router and using= tests; it mirrors default
    "other": dict(_db, TEST={"MIRROR": "default"}),
}
DATABASE_ROUTERS = ["abtest.routers.RecordingRouter"]
