import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
application = get_wsgi_application()

# One import may bring thousands of files: take the hard open-file limit (annotator.core.uploads).
from annotator.core.uploads import open_file_limit_raise  # noqa: E402

open_file_limit_raise()
