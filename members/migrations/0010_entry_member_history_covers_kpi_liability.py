from django.db import migrations, models


class Migration(migrations.Migration):
    # The new index is built before the old one goes, so that a member's history is always
    # read from an index.

    dependencies = [
        ("members", "0009_purchase_points_reversed_index"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="pointsentry",
            index=models.Index(
                fields=["member", "-effective_at", "-id"],
                include=("program", "kind", "points"),
                name="entry_member_history_kpi",
            ),
        ),
        migrations.RemoveIndex(
            model_name="pointsentry",
            name="entry_member_history",
        ),
    ]
