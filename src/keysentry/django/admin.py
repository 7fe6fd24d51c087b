"""The keys in Django's admin site: list, create (the key shown once, in the message bar),
edit, disable, enable, revoke, rotate, delete; and the accounts: list, create, edit, disable,
enable.

Nothing here saves a model instance: every change goes through the guard's lifecycle methods
(``Keysentry.issue``, ``update``, ``revoke``, ``rotate``, ``delete``, ``update_account``),
which check each value as the CLI does, apply it atomically and announce it to every process
(``INVALIDATOR``), so a key revoked or an account disabled in the admin is refused everywhere
at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from .. import _fields as check
from ..cli_output import status
from ..errors import KeysentryError
from ..records import KeyRecord, utcnow
from ..stores import codec
from .conf import guard
from .models import Account, APIKey
from .store import account_of, record_of

__all__ = ["APIKeyAdmin", "AccountAdmin", "AccountForm", "KeyForm"]

#: How long a key rotated by the admin's "rotate with grace" action keeps working.
ROTATION_GRACE = timedelta(hours=24)

_WORDS = "separated by spaces or commas"
_REFILL = "e.g. 1000/month (the balance set to 1000 each month) or +100/day (100 added each day)"


def record(obj: APIKey) -> KeyRecord:
    return record_of({name: getattr(obj, name) for name in codec.FIELDS})


class KeyForm(forms.ModelForm):  # type: ignore[type-arg]
    """A key's changeable fields, checked as ``Keysentry.issue``/``update`` check them."""

    scopes = forms.CharField(required=False, help_text=f"Scopes, {_WORDS}.")
    rate_limit = forms.CharField(
        required=False,
        help_text="e.g. 60/minute or '10/second, 1000/day'; 'none' for no limit; empty for the "
        "app's default.",
    )
    allowed_networks = forms.CharField(
        required=False, help_text=f"Client networks allowed (CIDRs), {_WORDS}; empty: any."
    )

    class Meta:
        model = APIKey
        fields: tuple[str, ...] = ("name", "owner", "scopes", "expires_at", "rate_limit")
        fields += ("allowed_networks", "credits", "refill", "metadata")
        help_texts: ClassVar[dict[str, str]] = {
            "refill": f"The credits' refill, {_REFILL}; empty: none."
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            current = record(self.instance)
            self.initial["scopes"] = " ".join(sorted(current.scopes))
            self.initial["allowed_networks"] = " ".join(map(str, current.allowed_networks))
            limits = current.rate_limit
            self.initial["rate_limit"] = (
                "" if limits is None else ", ".join(map(str, limits)) or "none"
            )

    def values(self) -> dict[str, Any]:
        """The form's values as the lifecycle methods take them."""
        data = self.cleaned_data
        rate = (data.get("rate_limit") or "").strip()
        return {
            "name": data.get("name") or "",
            "owner": data.get("owner") or None,
            "scopes": data.get("scopes") or (),
            "expires_at": data.get("expires_at"),
            "rate_limit": None if not rate else () if rate.lower() == "none" else rate,
            "allowed_networks": data.get("allowed_networks") or (),
            "credits": data.get("credits"),
            "refill": (data.get("refill") or "").strip() or None,
            "metadata": data.get("metadata") or {},
        }

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        try:
            check.check_fields(self.values())
        except (TypeError, ValueError) as exc:
            raise forms.ValidationError(str(exc)) from None
        return cleaned


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = KeyForm
    list_display = (
        "name",
        "shown_prefix",
        "owner",
        "shown_scopes",
        "expires_at",
        "last_used_at",
        "key_status",
    )
    list_filter = ("disabled",)
    search_fields = ("name", "owner", "prefix", "id")
    readonly_fields = (
        "id",
        "shown_prefix",
        "key_status",
        "created_at",
        "last_used_at",
        "request_count",
        "revoked_at",
        "rotated_to",
        "refilled_at",
    )
    actions = ("disable_keys", "enable_keys", "revoke_keys", "rotate_with_grace", "rotate_now")

    def get_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        fields = list(KeyForm.Meta.fields)
        return fields if obj is None else [*self.readonly_fields, *fields]

    def get_readonly_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    @admin.display(description="prefix")
    def shown_prefix(self, obj: APIKey) -> str:
        return f"{obj.prefix}..."

    @admin.display(description="scopes")
    def shown_scopes(self, obj: APIKey) -> str:
        return " ".join(sorted(obj.scopes or ())) or "-"

    @admin.display(description="status")
    def key_status(self, obj: APIKey) -> str:
        return status(record(obj), utcnow())

    # -- changes, through the guard ---------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: APIKey, form: Any, change: bool) -> None:
        ks = guard()
        values = form.values()
        if change:
            changed = {name: values[name] for name in form.changed_data if name in values}
            if changed:
                ks.update(obj.pk, **changed)
            return
        issued = ks.issue(**values)
        obj.pk = issued.record.id
        messages.warning(
            request,
            format_html(
                "The new key is <code>{}</code>. Copy it now: it is shown once, and only its "
                "digest is stored.",
                issued.key.reveal(),
            ),
        )

    def delete_model(self, request: HttpRequest, obj: APIKey) -> None:
        guard().delete(obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        for key_id in queryset.values_list("pk", flat=True):
            _each(request, guard().delete, key_id)

    @admin.action(description="Disable the selected keys (403 until enabled)")
    def disable_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        for key_id in queryset.values_list("pk", flat=True):
            _each(request, guard().disable, key_id)

    @admin.action(description="Enable the selected keys")
    def enable_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        for key_id in queryset.values_list("pk", flat=True):
            _each(request, guard().enable, key_id)

    @admin.action(description="Revoke the selected keys, for good")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        for key_id in queryset.values_list("pk", flat=True):
            _each(request, guard().revoke, key_id)

    @admin.action(description="Rotate the selected keys (the old ones work 24 more hours)")
    def rotate_with_grace(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        self._rotate(request, queryset, ROTATION_GRACE)

    @admin.action(description="Rotate the selected keys (the old ones revoked at once)")
    def rotate_now(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        self._rotate(request, queryset, timedelta(0))

    def _rotate(self, request: HttpRequest, queryset: QuerySet[APIKey], grace: timedelta) -> None:
        ks = guard()
        for key_id in queryset.values_list("pk", flat=True):
            issued = _each(request, lambda k: ks.rotate(k, grace=grace), key_id)
            if issued is not None:
                messages.warning(
                    request,
                    format_html(
                        "Key {} was rotated to {}: <code>{}</code>. Copy it now: it is shown once.",
                        key_id,
                        issued.record.id,
                        issued.key.reveal(),
                    ),
                )


class AccountForm(forms.ModelForm):  # type: ignore[type-arg]
    """An account's changeable fields, checked as ``Keysentry.update_account`` checks them."""

    rate_limit = forms.CharField(
        required=False,
        help_text="Limits all the account's keys share, on top of their own, e.g. "
        "'100/minute, 10000/day'; empty: none.",
    )

    class Meta:
        model = Account
        fields = ("owner", "disabled", "credits", "refill")
        help_texts: ClassVar[dict[str, str]] = {
            "owner": "The owner that the account's keys name.",
            "credits": "The balance every key of the account spends; empty: each key's own.",
            "refill": f"The balance's refill, {_REFILL}; empty: none.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            limits = account_of(_account_row(self.instance)).rate_limit
            self.initial["rate_limit"] = ", ".join(map(str, limits or ()))

    def values(self) -> dict[str, Any]:
        """The form's values as ``Keysentry.update_account`` takes them."""
        data = self.cleaned_data
        return {
            "disabled": bool(data.get("disabled")),
            "credits": data.get("credits"),
            "rate_limit": (data.get("rate_limit") or "").strip() or None,
            "refill": (data.get("refill") or "").strip() or None,
        }

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        try:
            check.check_fields(self.values())
        except (TypeError, ValueError) as exc:
            raise forms.ValidationError(str(exc)) from None
        return cleaned


def _account_row(obj: Account) -> dict[str, Any]:
    names = ("owner", "disabled", "credits", "rate_limit", "refill", "refilled_at")
    return {name: getattr(obj, name) for name in names}


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = AccountForm
    list_display = ("owner", "account_status", "credits", "shown_rate_limit", "refill")
    list_filter = ("disabled",)
    search_fields = ("owner",)
    readonly_fields = ("owner", "refilled_at")
    actions = ("disable_accounts", "enable_accounts")

    def get_fields(self, request: HttpRequest, obj: Account | None = None) -> Any:
        fields = ["disabled", "credits", "rate_limit", "refill"]
        return ["owner", *fields] if obj is None else [*self.readonly_fields, *fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Account | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Account | None = None) -> bool:
        # An account is never removed: one with nothing set changes nothing for its keys.
        return False

    @admin.display(description="status")
    def account_status(self, obj: Account) -> str:
        return "disabled" if obj.disabled else "active"

    @admin.display(description="rate limit")
    def shown_rate_limit(self, obj: Account) -> str:
        limits = account_of(_account_row(obj)).rate_limit
        return ", ".join(map(str, limits or ())) or "-"

    def save_model(self, request: HttpRequest, obj: Account, form: Any, change: bool) -> None:
        values = form.values()
        if change:
            changed = {name: values[name] for name in form.changed_data if name in values}
            if changed:
                guard().update_account(obj.pk, **changed)
            return
        # A new account: what was given (a refill's time is set only with a refill).
        guard().update_account(obj.owner, **{n: v for n, v in values.items() if v is not None})

    @admin.action(description="Disable the selected accounts (their keys: 403 until enabled)")
    def disable_accounts(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for owner in queryset.values_list("pk", flat=True):
            _each(request, guard().disable_account, owner)

    @admin.action(description="Enable the selected accounts")
    def enable_accounts(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for owner in queryset.values_list("pk", flat=True):
            _each(request, guard().enable_account, owner)


def _each(request: HttpRequest, change: Any, name: str) -> Any:
    """``change(name)`` for one selected key id or owner; a refusal becomes a message in
    the admin, and the action goes on with the others."""
    try:
        return change(name)
    except (KeysentryError, ValueError) as exc:
        messages.error(request, f"{name}: {exc}")
        return None
