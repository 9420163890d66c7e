"""WSGI entry point (``registry_project.webserver`` serves it with Granian)."""

import os

from django.core.wsgi import get_wsgi_application

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
