"""URLs whose view fails, for the tests of the 500 answers (under /api/ and outside)."""

from django.urls import path


def boom(request):
    return 1 // 0


urlpatterns = [
    path("api/v1/boom/", boom),
    path("boom/", boom),
]
