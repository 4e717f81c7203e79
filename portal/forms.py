"""Forms of the member portal. Every field has a label; errors name the field."""

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.cards import is_valid_card_number, normalize_card_number
from members.models import Member
from members.privacy import PROFILE_FIELDS, phone_taken


class DateInput(forms.DateInput):
    input_type = "date"


class EnrolForm(forms.Form):
    first_name = forms.CharField(label=_("First name"), max_length=80)
    last_name = forms.CharField(label=_("Last name"), max_length=80)
    email = forms.EmailField(
        label=_("Email"), widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    phone = forms.CharField(
        label=_("Mobile phone (optional)"),
        max_length=20,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )
    birth_date = forms.DateField(
        label=_("Birth date (optional)"),
        required=False,
        widget=DateInput,
        help_text=_("For your birthday bonus."),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("At least 8 characters, not only digits, not a common password."),
    )
    preferred_language = forms.ChoiceField(
        label=_("Language"), choices=settings.LANGUAGES, initial=settings.LANGUAGE_CODE
    )
    referral_code = forms.CharField(
        label=_("Referral code (optional)"), max_length=10, required=False
    )
    marketing_consent = forms.BooleanField(
        label=_("Send me offers and news of the program by email"),
        required=False,
        initial=False,
    )

    def __init__(self, *args, program, **kwargs):
        self.program = program
        super().__init__(*args, **kwargs)

    def clean_email(self):
        return self.cleaned_data["email"].strip().lower()

    def clean_referral_code(self):
        code = self.cleaned_data["referral_code"].strip().upper()
        if code and not Member.objects.filter(program=self.program, referral_code=code).exists():
            raise forms.ValidationError(_("This referral code is unknown."))
        return code

    def clean_birth_date(self):
        value = self.cleaned_data["birth_date"]
        if value and value >= timezone.localdate():
            raise forms.ValidationError(_("The birth date must be in the past."))
        return value

    def clean(self):
        data = super().clean()
        phone = (data.get("phone") or "").strip()
        email = data.get("email")
        if phone and email:
            owner = Member.objects.filter(program=self.program, phone=phone).first()
            if owner is not None and owner.email != email:
                self.add_error(
                    "phone",
                    _("This phone number is already registered: claim your card instead."),
                )
        password = data.get("password")
        if password:
            user = _PasswordUser(
                data.get("email", ""), data.get("first_name", ""), data.get("last_name", "")
            )
            try:
                password_validation.validate_password(password, user)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return data


class _PasswordUser:
    """What the password validators compare a new password with (name and email)."""

    def __init__(self, email, first_name, last_name):
        self.email = email
        self.first_name = first_name
        self.last_name = last_name
        self.username = ""


class LoginForm(forms.Form):
    email = forms.EmailField(
        label=_("Email"), widget=forms.EmailInput(attrs={"autocomplete": "username"})
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class EmailForm(forms.Form):
    email = forms.EmailField(
        label=_("Email"), widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )


class ClaimForm(forms.Form):
    card_number = forms.CharField(
        label=_("Card number"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        help_text=_("The 13 digits under the barcode of your card."),
    )
    email = forms.EmailField(
        label=_("Email given at the till"),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    def clean_card_number(self):
        value = normalize_card_number(self.cleaned_data["card_number"])
        if not is_valid_card_number(value):
            raise forms.ValidationError(_("This is not a valid card number: check the 13 digits."))
        return value


class ProfileForm(forms.ModelForm):
    class Meta:
        model = Member
        fields = list(PROFILE_FIELDS)
        widgets = {"birth_date": DateInput}
        labels = {"preferred_language": _("Language of the portal and emails")}

    def clean_phone(self):
        phone = (self.cleaned_data["phone"] or "").strip()
        if phone_taken(self.instance, phone):
            raise forms.ValidationError(
                _("Another member of this program already uses this phone number.")
            )
        return phone

    def clean_birth_date(self):
        value = self.cleaned_data["birth_date"]
        if value and value >= timezone.localdate():
            raise forms.ValidationError(_("The birth date must be in the past."))
        return value


class ConsentForm(forms.Form):
    marketing_consent = forms.BooleanField(
        label=_("Send me offers and news of the program by email"), required=False
    )


class CloseAccountForm(forms.Form):
    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    confirm = forms.BooleanField(
        label=_("I understand that my account is closed for good and my points are lost"),
        required=True,
    )

    def __init__(self, *args, user, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError(_("This is not your password."))
        return password


class HistoryFilterForm(forms.Form):
    KIND_CHOICES = [
        ("", _("Everything")),
        ("purchases", _("Purchases")),
        ("returns", _("Returns")),
        ("bonuses", _("Bonuses and adjustments")),
        ("redemptions", _("Rewards")),
        ("expiries", _("Expired points")),
    ]
    kind = forms.ChoiceField(label=_("Show"), choices=KIND_CHOICES, required=False)
    start = forms.DateField(label=_("From"), required=False, widget=DateInput)
    end = forms.DateField(label=_("To"), required=False, widget=DateInput)

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", _("The end date is before the start date."))
        return data
