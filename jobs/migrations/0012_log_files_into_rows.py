# The logs written before 0011 were `log.txt` in each job's folder: copy them into rows, so the job
# pages keep showing them. A line's "HH:MM:SS" stamp is kept, on the day the job started (in
# TIME_ZONE: the file had no day); a line without one (the rest of a message of several lines)
# takes its previous line's. The files are left where they are.
from __future__ import annotations

import re
from datetime import datetime, time
from pathlib import Path

from django.conf import settings
from django.db import migrations
from django.utils import timezone

_STAMPED = re.compile(r"(\d\d):(\d\d):(\d\d) (.*)", re.DOTALL)


def _rows(text: str, day: datetime) -> list[tuple[datetime, str]]:
    rows, at = [], day
    for line in text.splitlines():
        stamped = _STAMPED.fullmatch(line)
        if stamped:
            hours, minutes, seconds, line = stamped.groups()
            at = datetime.combine(day.date(), time(int(hours), int(minutes), int(seconds)), tzinfo=day.tzinfo)
        rows.append((at, line))
    return rows


def copy_files(apps, schema_editor):  # type: ignore[no-untyped-def]
    TrainingJob = apps.get_model("jobs", "TrainingJob")
    LogLine = apps.get_model("jobs", "LogLine")
    for pk, started, created in TrainingJob.objects.values_list("pk", "started_at", "created_at").iterator():
        path = Path(settings.DATA_DIR) / "jobs" / str(pk) / "log.txt"
        if path.is_file() and not LogLine.objects.filter(job_id=pk).exists():
            rows = _rows(path.read_text(errors="replace"), timezone.localtime(started or created))
            LogLine.objects.bulk_create([LogLine(job_id=pk, at=at, text=text) for at, text in rows], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0011_log_lines"),
    ]

    operations = [
        migrations.RunPython(copy_files, migrations.RunPython.noop),
    ]
