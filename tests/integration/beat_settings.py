"""Settings for the integration tests' `celery beat`: only the release sweeper, every second.

The production schedule sweeps every 30 s; the tests cannot wait that long.
"""

from aispm_site.test_settings import *  # noqa: F403
from aispm_site.test_settings import CELERY_BEAT_SCHEDULE

CELERY_BEAT_SCHEDULE = {
    "sweep-releases": {**CELERY_BEAT_SCHEDULE["sweep-releases"], "schedule": 1.0},
}
