from django.urls import path

from tests.views import VIEWS

urlpatterns = [path(f"{name}/", view, name=name) for name, view in VIEWS.items()]
