"""Middleware the tests put around the views."""

from tests.models import Row


def rewrap_body(get_response):
    """Wraps every streaming body again, as a debug toolbar does."""

    def middleware(request):
        response = get_response(request)
        if response.streaming:
            response.streaming_content = (chunk for chunk in response.streaming_content)
        return response

    return middleware


def query_first(get_response):
    """Queries before the rest of the middleware runs (a session or tenant lookup, say)."""

    def middleware(request):
        Row.objects.exists()
        return get_response(request)

    return middleware


def serve_files(get_response):
    """Answers /static/<name> with a FileResponse before URL resolution, as WhiteNoise does."""
    import io

    from django.http import FileResponse

    def middleware(request):
        if request.path.startswith("/static/"):
            return FileResponse(io.BytesIO(request.path.rsplit("/", 1)[1].encode()))
        return get_response(request)

    return middleware
