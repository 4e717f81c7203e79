from django.db import migrations, models


class Migration(migrations.Migration):
    # The new index is built before the old one goes, so that a member's purchases are always
    # found by an index.

    dependencies = [
        ("members", "0007_purchase_period_index_covers_kpi_reads"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="purchase",
            index=models.Index(
                fields=["member", "occurred_at"],
                include=("program", "store", "total_amount", "returned_amount"),
                name="purchase_member_occurred_kpi",
            ),
        ),
        migrations.RemoveIndex(
            model_name="purchase",
            name="purchase_member_occurred",
        ),
    ]
