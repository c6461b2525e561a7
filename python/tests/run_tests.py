#!/usr/bin/python3
"""Run the Django tests: /usr/bin/python3 python/tests/run_tests.py

Needs Django and psycopg2 or psycopg 3 (Debian: python3-django, python3-psycopg2), a
PostgreSQL server with upsert_counter installed, reachable through PGHOST,
PGPORT and PGUSER (a superuser: the test database is created and the
extension created by the migration).  make test does all of this.
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.dirname(here)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test.utils import get_runner  # noqa: E402

django.setup()
from django.db import connection  # noqa: E402

# the driver Django chose (Django 4.2+ takes psycopg 3 when both are present)
driver = connection.Database
print("Django %s, %s %s" % (django.get_version(), driver.__name__, driver.__version__))
runner = get_runner(settings)(verbosity=2, interactive=False)
failures = runner.run_tests(["test_upsert"])
sys.exit(1 if failures else 0)
