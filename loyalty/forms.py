"""Form helpers shared by the staff admin and the member portal."""

from loyalty.errors import DomainError


def add_domain_error(form, exc: DomainError, aliases: dict[str, str] | None = None) -> None:
    """Show a service's refusal on the form: on the field it names (or its alias on this form,
    e.g. the API's `reward_id` is the form's `reward`), else above the form."""
    field = (aliases or {}).get(exc.field, exc.field)
    form.add_error(field if field in form.fields else None, exc.detail)
