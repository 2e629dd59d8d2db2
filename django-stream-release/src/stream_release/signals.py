"""Signals of django-stream-release.

`connections_released` is sent by release_connections() each time it runs, with
`released`: the aliases it closed (or gave back to their pool), and `kept_in_atomic`: those
it left open because they were inside an atomic block (a test's transaction, for instance),
where closing would end the transaction. The pytest plugin listens to it.
"""

from django.dispatch import Signal

connections_released = Signal()
