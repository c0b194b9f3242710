# The Network model now belongs to the networks app (same table): point the job's link there
# and drop the model from this app's state. Nothing in the database changes.
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0009_device_used_several"),
        ("networks", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="trainingjob",
                    name="custom_network",
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="training_jobs", to="networks.network"),
                ),
                migrations.DeleteModel(name="Network"),
            ],
        ),
    ]
