from django.urls import path

from tests.views import VIEWS, query_then_file

urlpatterns = [path(f"{name}/", view, name=name) for name, view in VIEWS.items()]
urlpatterns.append(path("query-then-file/", query_then_file, name="query-then-file"))  # the detector's test only
