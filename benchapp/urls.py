from django.urls import path

from benchapp import plain, views

urlpatterns = [
    path("stream/<slug:variant>/", views.stream, name="stream"),
    path("probe/", views.probe, name="probe"),
    path("queries/", plain.queries, name="queries"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
]
