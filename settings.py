import os
from pathlib import Path

import dj_database_url

from corehq.couchsettings import CouchSettingsHelper, checked_server_url

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get('DJANGO_SECRET_KEY', 'dev-only-not-secret')
DEBUG = os.environ.get('DJANGO_DEBUG', '') == '1'
ALLOWED_HOSTS = ['localhost', '127.0.0.1']
UNIT_TESTING = os.environ.get('UNIT_TESTING', '') == '1'

INSTALLED_APPS = [
    'django.contrib.admin',
    'django.contrib.auth',
    'django.contrib.contenttypes',
    'django.contrib.sessions',
    'django.contrib.messages',
    'django.contrib.staticfiles',
    'corehq.embedded_couch',
    'corehq.preindex',
    'corehq.couchapps',
    'corehq.doctypemigrations',
    'corehq.pillows',
    'corehq.apps.domain',
    'corehq.apps.users',
    'corehq.apps.groups',
    'corehq.apps.forms',
    'corehq.apps.cases',
    'corehq.demo',
]

MIDDLEWARE = [
    'django.middleware.security.SecurityMiddleware',
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
    'django.contrib.messages.middleware.MessageMiddleware',
    'django.middleware.clickjacking.XFrameOptionsMiddleware',
]

# The admin (`./manage.py runserver`, then /admin/) shows each migration's state and status.
ROOT_URLCONF = 'urls'
STATIC_URL = 'static/'

TEMPLATES = [{
    'BACKEND': 'django.template.backends.django.DjangoTemplates',
    'APP_DIRS': True,
    'OPTIONS': {'context_processors': [
        'django.contrib.auth.context_processors.auth',
        'django.contrib.messages.context_processors.messages',
        'django.template.context_processors.request',
    ]},
}]

# Django's own database holds the migration state. DATABASE_URL selects any
# backend, e.g. postgres://user:pass@host/dbname.
DATABASES = {
    'default': dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'var' / 'state.sqlite3'}", conn_max_age=0),
}
if 'DATABASE_URL' not in os.environ:
    # A fresh clone has no var/ yet, and SQLite does not create folders.
    (BASE_DIR / 'var').mkdir(exist_ok=True)
DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'
USE_TZ = True
TIME_ZONE = 'UTC'

# The embedded pouchdb-server is the default CouchDB server.
COUCH_EMBEDDED_PORT = int(os.environ.get('COUCH_EMBEDDED_PORT', '5984'))
COUCH_EMBEDDED_DATA_DIR = Path(os.environ.get('COUCH_EMBEDDED_DATA_DIR', BASE_DIR / 'var' / 'couchdb'))
# Checked and its credentials encoded here, before couchdbkit parses it (see checked_server_url).
COUCH_SERVER_URL = checked_server_url(
    os.environ.get('COUCH_SERVER_URL', f'http://127.0.0.1:{COUCH_EMBEDDED_PORT}'))
COUCH_DATABASE_NAME = os.environ.get('COUCH_DATABASE_NAME', 'commcarehq')
COUCH_DATABASE = f"{COUCH_SERVER_URL.rstrip('/')}/{COUCH_DATABASE_NAME}"

NEW_USERS_GROUPS_DB = 'users'  # the database we will be using
# The database to use (will later be changed to NEW_USERS_GROUPS_DB); the
# environment variable lets the demo flip it without editing code.
USERS_GROUPS_DB = os.environ.get('USERS_GROUPS_DB') or None

COUCHDB_APPS = [
    'couchapps',
    'domain',
    'forms',
    'cases',
    ('groups', USERS_GROUPS_DB),
    ('users', USERS_GROUPS_DB),
]

COUCH_SETTINGS_HELPER = CouchSettingsHelper(
    COUCH_DATABASE,
    COUCHDB_APPS,
    [NEW_USERS_GROUPS_DB],  # list of secondary databases to register
)
COUCHDB_DATABASES = COUCH_SETTINGS_HELPER.get_couchdb_databases()

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {'console': {'class': 'logging.StreamHandler'}},
    'loggers': {'corehq': {'handlers': ['console'], 'level': os.environ.get('LOG_LEVEL', 'WARNING')}},
}
