"""Pieces that every app's admin shares: read-only model pages and action pages (a form acting
on one object, or on a model) drawn in the admin's frame."""

from django.template.response import TemplateResponse


class ReadOnlyAdminMixin:
    """Nothing can be added, changed or deleted; staff with the view permission can look."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def render_action_form(model_admin, request, template: str, context: dict) -> TemplateResponse:
    """A page of templates/admin/action_form.html's family (a form acting on one object, or on
    a model) in the admin's frame: the site context and the model's options added."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "has_view_permission": model_admin.has_view_permission(request, context.get("original")),
        **context,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, template, context)
