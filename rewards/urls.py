"""POS API routes of rewards and vouchers (mounted under /api/v1/)."""

from django.urls import path

from . import api

api_urlpatterns = [
    path("rewards/", api.RewardListView.as_view(), name="reward-list"),
    path(
        "members/<str:card_number>/redemptions/",
        api.MemberRedemptionView.as_view(),
        name="member-redeem",
    ),
    path("vouchers/<str:code>/", api.VoucherView.as_view(), name="voucher-detail"),
    path("vouchers/<str:code>/use/", api.VoucherUseView.as_view(), name="voucher-use"),
    # The same as `use/`, kept for the tills that call it (deprecated in the schema).
    path(
        "vouchers/<str:code>/redeem/", api.VoucherUseAliasView.as_view(), name="voucher-use-alias"
    ),
]
