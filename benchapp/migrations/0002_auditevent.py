from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("benchapp", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("request_id", models.CharField(db_index=True, max_length=64)),
                ("kind", models.CharField(default="export requested", max_length=32)),
                ("variant", models.CharField(max_length=32)),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
        ),
    ]
