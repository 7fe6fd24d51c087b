from api import views
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", views.health),
    path("v1/me", views.Me.as_view()),
    path("v1/hello", views.hello),
]
