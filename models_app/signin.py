"""Brute-force protection of password sign-in (the UI login page and the admin login).

Failures are counted per (username, client address) in the Django cache; after
``MODELYARD_LOGIN_FAILURE_LIMIT`` failures that pair is refused for
``MODELYARD_LOGIN_LOCKOUT_SECONDS`` — even with the right password — and the login page answers
429. Counting the pair, not the username alone, keeps an attacker from locking a user out from
elsewhere. API tokens are not passwords and are not counted here. Set ``CACHE_URL`` to a Redis
URL so every web worker shares the counters.
"""

from __future__ import annotations

import hashlib
import logging

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import cache

logger = logging.getLogger(__name__)
THROTTLED = "throttled"


def _key(request, username: str) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    digest = hashlib.sha256(f"{username.strip().lower()}|{address}".encode()).hexdigest()
    return f"signin-failures:{digest}"


def signin_locked(request, username: str) -> bool:
    return cache.get(_key(request, username), 0) >= settings.MODELYARD_LOGIN_FAILURE_LIMIT


def signin_failed(request, username: str) -> None:
    key = _key(request, username)
    cache.add(key, 0, timeout=settings.MODELYARD_LOGIN_LOCKOUT_SECONDS)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=settings.MODELYARD_LOGIN_LOCKOUT_SECONDS)
        count = 1
    if count == settings.MODELYARD_LOGIN_FAILURE_LIMIT:
        logger.warning(
            "sign-in locked for %s seconds after %s failures", settings.MODELYARD_LOGIN_LOCKOUT_SECONDS, count
        )


def signin_succeeded(request, username: str) -> None:
    cache.delete(_key(request, username))


class ThrottledFormMixin:
    """Refuses a locked (username, address) pair before checking the password; counts failures."""

    throttled = False

    def clean(self):
        username = self.data.get("username", "") if hasattr(self.data, "get") else ""
        if signin_locked(self.request, username):
            self.throttled = True
            minutes = max(1, settings.MODELYARD_LOGIN_LOCKOUT_SECONDS // 60)
            raise forms.ValidationError(
                f"Too many failed sign-ins. Try again in {minutes} minutes.", code=THROTTLED
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            signin_failed(self.request, username)
            raise
        signin_succeeded(self.request, username)
        return cleaned


class ThrottledAuthenticationForm(ThrottledFormMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledFormMixin, AdminAuthenticationForm):
    pass


class SignInView(LoginView):
    """Django's login view with the throttled form; a locked-out attempt is a 429."""

    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error(forms.forms.NON_FIELD_ERRORS, THROTTLED):
            response.status_code = 429
        return response
