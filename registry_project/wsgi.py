"""WSGI entry point (``registry_project.webserver`` serves it with Granian)."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry_project.settings")

# Some servers (Granian, wsgiref) start each request's environ from the process environment, so
# SECRET_KEY, DATABASE_URL or AWS keys would sit in every request.META, where an error report
# could show them. Those inherited entries are dropped; what the request itself set stays.
_REQUEST_KEYS = {
    *("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH"),
    *("SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "HTTPS"),
}
_INHERITED = {key: value for key, value in os.environ.items() if key not in _REQUEST_KEYS}


def _without_process_environment(app):
    def application(environ, start_response):
        for key in _INHERITED.keys() & environ.keys():
            if environ[key] == _INHERITED[key]:
                del environ[key]
        return app(environ, start_response)

    return application


application = _without_process_environment(get_wsgi_application())


def served_application():
    """``application`` for a server process (Granian calls it once per worker: ``--factory``).

    It imports every view now (the URLconf) and moves what start-up made out of the garbage
    collector's reach: a full collection otherwise walks ~120,000 long-lived objects (33 ms, a
    pause that lands in the p99 of every request the worker is serving), and then ~4,000
    (under 1 ms). Not done on import, so a test process that imports this module is untouched.
    """
    get_resolver().url_patterns  # noqa: B018 - the access imports the URLconf and every view
    gc.collect()  # start-up's garbage first: what is frozen is never collected
    gc.freeze()
    return application
