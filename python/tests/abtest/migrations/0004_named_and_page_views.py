from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("abtest", "0003_rollups_and_django5")]

    operations = [
        migrations.CreateModel(
            name="NamedCounter",
            fields=[
                ("name", models.CharField(max_length=50, primary_key=True, serialize=False)),
                ("n", models.IntegerField(default=0)),
                ("label", models.CharField(default="", max_length=50)),
            ],
        ),
        migrations.CreateModel(
            name="PageView",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("path", models.CharField(max_length=200)),
                ("day", models.DateField()),
                ("views", models.PositiveIntegerField(default=0)),
            ],
            options={"constraints": [models.UniqueConstraint(fields=["path", "day"], name="pageview_path_day")]},
        ),
    ]
