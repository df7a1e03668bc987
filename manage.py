#!/usr/bin/env python
import os
import sys

if __name__ == '__main__':
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'settings')
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    try:
        settings.INSTALLED_APPS  # reads settings.py, which checks COUCH_SERVER_URL
    except ImproperlyConfigured as e:
        sys.exit(f"ImproperlyConfigured: {e}")  # one line; a traceback would add nothing
    execute_from_command_line(sys.argv)
