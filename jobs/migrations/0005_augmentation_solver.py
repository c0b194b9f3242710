from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0004_group_notes_stop_reason'),
    ]

    operations = [
        migrations.AddField(
            model_name='trainingjob',
            name='augmentation',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name='trainingjob',
            name='accumulate',
            field=models.PositiveIntegerField(default=1, help_text='Batches per optimizer step.'),
        ),
        migrations.AddField(
            model_name='trainingjob',
            name='grad_clip',
            field=models.FloatField(default=0.0, help_text='Largest gradient norm; 0 is off.'),
        ),
        migrations.AddField(
            model_name='trainingjob',
            name='label_smoothing',
            field=models.FloatField(default=0.0),
        ),
    ]
