"""POS API routes of members, purchases and returns (mounted under /api/v1/)."""

from django.urls import path

from . import api

api_urlpatterns = [
    path("members/", api.MemberEnrolView.as_view(), name="member-enrol"),
    path("members/lookup/", api.MemberLookupView.as_view(), name="member-lookup"),
    path(
        "members/<str:card_number>/history/", api.MemberHistoryView.as_view(), name="member-history"
    ),
    path("purchases/", api.PurchaseView.as_view(), name="purchase-create"),
    path("purchases/quote/", api.QuoteView.as_view(), name="purchase-quote"),
    path("purchases/<str:receipt_id>/returns/", api.ReturnView.as_view(), name="return-create"),
]
