"""URLs of the member portal: /portal/ lists the programs, /portal/<program slug>/... the rest."""

from django.urls import path

from . import views

app_name = "portal"


def page(route: str, view, name: str):
    return path(f"<slug:program>/{route}", view, name=name)


urlpatterns = [
    path("", views.programs, name="programs"),
    page("", views.home, name="home"),
    page("enrol/", views.enrol, name="enrol"),
    page("enrol/check-your-email/", views.enrol_done, name="enrol-done"),
    page("verify/resend/", views.resend_verification, name="verify-resend"),
    page("verify/<str:token>/", views.verify_email, name="verify-email"),
    page("claim/", views.claim, name="claim"),
    page("login/", views.login_view, name="login"),
    page("logout/", views.logout_view, name="logout"),
    page("password/reset/", views.password_reset, name="password-reset"),
    page("password/reset/sent/", views.password_reset_done, name="password-reset-done"),
    page(
        "password/reset/<uidb64>/<token>/",
        views.PasswordResetConfirm.as_view(),
        name="password-reset-confirm",
    ),
    page("history/", views.history, name="history"),
    page("card/", views.card, name="card"),
    page("rewards/", views.rewards, name="rewards"),
    page("rewards/<int:pk>/", views.reward_detail, name="reward"),
    page("vouchers/", views.vouchers, name="vouchers"),
    page("vouchers/<str:code>/", views.voucher, name="voucher"),
    page("profile/", views.profile, name="profile"),
    page("profile/my-data.json", views.data_export, name="data-json"),
    page("profile/my-data-csv.zip", views.data_export, name="data-csv"),
    page("profile/close/", views.close_account, name="close"),
    page("closed/", views.closed, name="closed"),
    page("language/", views.language, name="language"),
]
