from django.urls import path

from tests.views import VIEWS, events, query_then_file, write_then_stream

urlpatterns = [path(f"{name}/", view, name=name) for name, view in VIEWS.items()]
urlpatterns.append(path("query-then-file/", query_then_file, name="query-then-file"))  # the detector's test only
urlpatterns.append(path("write-then-stream/", write_then_stream, name="write-then-stream"))
urlpatterns.append(path("events/", events, name="events"))
