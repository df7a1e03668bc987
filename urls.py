"""The project's URLs: the Django admin, where the state and status of each doc
type migration can be watched (see corehq/doctypemigrations/admin.py)."""
from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve
from django.urls import path, re_path
from django.views.generic import RedirectView

urlpatterns = [
    path('admin/', admin.site.urls),
    path('', RedirectView.as_view(url='/admin/')),
    # runserver serves the admin's CSS and scripts only with DEBUG on, and DEBUG
    # would show settings (a COUCH_SERVER_URL with credentials) on an error page.
    # This admin is an operator's tool behind a login, with a handful of users:
    # serving its static files from Django costs nothing that matters.
    re_path(rf"^{settings.STATIC_URL.strip('/')}/(?P<path>.*)$", serve, {'insecure': True}),
]
