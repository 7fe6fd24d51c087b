"""The Django app: ``INSTALLED_APPS = [..., "keysentry.django"]``."""

from __future__ import annotations

from django.apps import AppConfig


class KeysentryConfig(AppConfig):
    name = "keysentry.django"
    label = "keysentry"
    verbose_name = "API keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A test that overrides settings.KEYSENTRY gets a guard built from the new value.
        from django.core.signals import setting_changed

        from .conf import forget_guard

        setting_changed.connect(forget_guard, dispatch_uid="keysentry.forget_guard")
