"""`python -m benchapp <command>`: Django's manage.py for the app under test."""

import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
execute_from_command_line([sys.argv[0].replace("__main__.py", "benchapp"), *sys.argv[1:]])
