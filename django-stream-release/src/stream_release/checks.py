"""Django system checks of django-stream-release (registered by its AppConfig)."""
