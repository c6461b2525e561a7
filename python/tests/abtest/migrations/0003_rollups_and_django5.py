import django
import django.db.models.deletion
from django.db import migrations, models
from django.db.models.functions import Now, TruncDate

operations = [
    migrations.CreateModel(
        name="Event",
        fields=[
            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
            ("ab_test", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="abtest.abtest")),
            ("version", models.CharField(max_length=9)),
            ("at", models.DateTimeField()),
            ("converted", models.BooleanField(default=False)),
            ("weight", models.IntegerField(null=True)),
        ],
    ),
    migrations.CreateModel(
        name="PageCounter",
        fields=[
            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
            ("site", models.IntegerField()),
            ("path", models.CharField(max_length=100)),
            ("slug", models.CharField(max_length=100, unique=True)),
            ("code", models.CharField(max_length=10, null=True, unique=True)),
            ("views", models.IntegerField(default=0)),
            ("title", models.CharField(default="", max_length=100)),
            ("touched", models.DateTimeField(auto_now=True)),
        ],
        options={"unique_together": {("site", "path")}},
    ),
    migrations.RunSQL(
        "CREATE TABLE abtest_partitionedhit (page varchar(50) PRIMARY KEY, n integer NOT NULL DEFAULT 0)"
        " PARTITION BY HASH (page);"
        " CREATE TABLE abtest_partitionedhit_0 PARTITION OF abtest_partitionedhit"
        " FOR VALUES WITH (MODULUS 2, REMAINDER 0);"
        " CREATE TABLE abtest_partitionedhit_1 PARTITION OF abtest_partitionedhit"
        " FOR VALUES WITH (MODULUS 2, REMAINDER 1);",
        reverse_sql="DROP TABLE abtest_partitionedhit"),
]

# models that need the running Django's features exist only where it has them
if django.VERSION >= (5, 0):
    operations.append(migrations.CreateModel(
        name="Dj5Counter",
        fields=[
            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
            ("name", models.CharField(max_length=20, null=True)),
            ("n", models.IntegerField(default=0)),
            ("both", models.IntegerField(default=1, db_default=2)),
            ("only_db", models.IntegerField(db_default=3)),
            ("stamp", models.DateTimeField(auto_now=True, db_default=Now())),
            ("day", models.GeneratedField(expression=TruncDate("stamp"), output_field=models.DateField(),
                                          db_persist=True)),
        ],
        options={"constraints": [models.UniqueConstraint(fields=["name"], name="dj5_name",
                                                         nulls_distinct=False)]},
    ))
if hasattr(models, "CompositePrimaryKey"):    # Django 5.2
    operations.append(migrations.CreateModel(
        name="CompositeHit",
        fields=[
            ("pk", models.CompositePrimaryKey("site", "day", blank=True, editable=False,
                                              primary_key=True, serialize=False)),
            ("site", models.IntegerField()),
            ("day", models.DateField()),
            ("n", models.IntegerField(default=0)),
        ],
    ))


class Migration(migrations.Migration):

    dependencies = [("abtest", "0002_iphit")]

    operations = operations
