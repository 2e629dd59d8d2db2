"""The app as ASGI (server uvicorn in matrix.toml): Django's ASGIHandler. A sync view runs in a
thread of its own request (asgiref's ThreadSensitiveContext); a sync streaming body is consumed
whole before the first byte goes out (StreamingHttpResponse.__aiter__)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
application = get_asgi_application()
