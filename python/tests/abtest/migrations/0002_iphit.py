from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("abtest", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="IpHit",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("ip", models.GenericIPAddressField(unique=True)),
                ("n", models.IntegerField(default=0)),
            ],
        ),
    ]
