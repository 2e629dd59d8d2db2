"""The release variants of /stream/<variant>/: what the view does after its queries and
before returning the StreamingHttpResponse.

To add a variant, write one function here under @variant("its-name") and add one
[variants.its-name] table to matrix.toml.
"""

from django.db import close_old_connections, connection

from benchapp.release import release_connections

VARIANTS = {}


def variant(name):
    def register(func):
        VARIANTS[name] = func
        return func

    return register


@variant("hold")
def hold():
    """Nothing: the connection stays checked out until the last chunk is sent."""


@variant("close-old")
def close_old():
    close_old_connections()


@variant("force-close")
def force_close():
    connection.close()


@variant("release")
def release():
    release_connections()
