"""The nightly voucher job: vouchers past their expiry date become expired, and their points
come back when the program's policy says so. Registered in the members' nightly chain, right
after the release of pending points (rewards/apps.py)."""

import uuid

from django.db import connection
from django.db.models import F

from loyalty.sql import dt
from members import ledger
from members.batches import Context, batch_transaction
from members.ledger import Bucket, BulkPosting, Kind

from .models import Redemption, Reward
from .services import format_code

R = Redemption._meta.db_table


def expire_vouchers(ctx: Context) -> dict:
    """Batches of members with a voucher past its date: lock the members, then expire their
    due vouchers (refunding points and stock when the program refunds expired vouchers)."""
    program, now = ctx.program, ctx.now
    refund = program.refund_expired_vouchers
    summary = {"vouchers": 0, "points_refunded": 0, "batches": 0}
    last = 0
    while True:
        with batch_transaction(ctx):
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT DISTINCT member_id FROM {R} WHERE program_id = %s AND "  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters
                    "status = 'issued' AND expires_at <= %s AND member_id > %s "
                    "ORDER BY member_id LIMIT %s",
                    [program.pk, dt(now), last, ctx.batch_size],
                )
                ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                break
            last = ids[-1]
            ledger.lock_members(ids)
            due = list(
                Redemption.objects.select_for_update()
                .filter(member_id__in=ids, status=Redemption.Status.ISSUED, expires_at__lte=now)
                .values_list("pk", "member_id", "points_spent", "reward_id", "code")
                .order_by("pk")
            )
            txns = {}
            if refund:
                postings = []
                for pk, member_id, points, _reward, code in due:
                    txns[pk] = uuid.uuid4()
                    postings.append(
                        BulkPosting(
                            member_id=member_id,
                            kind=Kind.REFUND,
                            bucket=Bucket.AVAILABLE,
                            points=points,
                            txn=txns[pk],
                            effective_at=now,
                            reason=f"voucher {format_code(code)} expired",
                        )
                    )
                    summary["points_refunded"] += points
                ledger.post_many(program.pk, postings, now=now)
                stock_back: dict[int, int] = {}
                for _pk, _member, _points, reward_id, _code in due:
                    stock_back[reward_id] = stock_back.get(reward_id, 0) + 1
                for reward_id, count in sorted(stock_back.items()):
                    Reward.objects.filter(pk=reward_id, stock__isnull=False).update(
                        stock=F("stock") + count
                    )
            if refund:
                prep = Redemption._meta.get_field("refund_txn").get_db_prep_value
                with connection.cursor() as cursor:
                    cursor.executemany(
                        f"UPDATE {R} SET status = 'expired', closed_at = %s, refund_txn = %s "  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters
                        "WHERE id = %s",
                        [(dt(now), prep(txn, connection), pk) for pk, txn in txns.items()],
                    )
            else:
                Redemption.objects.filter(pk__in=[row[0] for row in due]).update(
                    status=Redemption.Status.EXPIRED, closed_at=now
                )
            summary["vouchers"] += len(due)
            summary["batches"] += 1
    return summary
