from __future__ import annotations

from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from . import views

urlpatterns = [
    path("health", views.health),
    path("plain", views.plain),
    path("async-plain", views.async_plain),
    path("v1/me", views.Me.as_view()),
    path("v1/items", views.Items.as_view()),
    path("v1/write", views.Write.as_view()),
    path("public/me", views.Me.as_view()),
    path("public/schema", SpectacularAPIView.as_view()),
    path("admin/", admin.site.urls),
]
