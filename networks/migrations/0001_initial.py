# The Network model moved here from the jobs app; its table (jobs_network) stays as it was, so
# this only tells Django's state where the model now lives (jobs 0010 lets go of it).
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("jobs", "0009_device_used_several"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Network",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=100)),
                        ("description", models.TextField(blank=True)),
                        ("spec", models.JSONField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("owner", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                                    related_name="networks", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={"db_table": "jobs_network", "ordering": ["name"]},
                ),
                migrations.AddConstraint(
                    model_name="network",
                    constraint=models.UniqueConstraint(fields=("owner", "name"), name="network_name_unique_per_owner"),
                ),
            ],
        ),
    ]
