"""Roles are Django groups: viewer, operator, reviewer, commander, admin.

Every cockpit role can read; each action names the role it needs. Superusers and members of the
admin group hold every role. A logged-in user with no role (an outsider) sees nothing.
"""

from functools import wraps

from django.contrib import admin
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

VIEWER = "viewer"
OPERATOR = "operator"
REVIEWER = "reviewer"
COMMANDER = "commander"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, REVIEWER, COMMANDER, ADMIN)


def user_roles(user) -> frozenset[str]:
    """The roles a user holds, computed once per request object."""
    if not user or not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_cockpit_roles", None)
    if cached is not None:
        return cached
    if user.is_superuser:
        roles = frozenset(ROLES)
    else:
        groups = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        roles = frozenset(ROLES) if ADMIN in groups else frozenset(groups)
        if roles:
            # Holding any cockpit role means the person may read the cockpit.
            roles = roles | {VIEWER}
    user._cockpit_roles = roles
    return roles


def has_role(user, role: str) -> bool:
    return role in user_roles(user)


def role_required(role: str):
    """Decorate a view: anonymous users go to login, users without `role` get 403."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page needs the {role} role.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class HasViewerRoleOrProjectKey(BasePermission):
    """API access: a valid project ingest key, or a logged-in person with a cockpit role."""

    message = "Send a project key (Authorization: Bearer …) or log in with a cockpit role."

    def has_permission(self, request, view) -> bool:
        if getattr(request, "project", None) is not None:
            return True
        return has_role(request.user, VIEWER)


def roles_context(request) -> dict:
    roles = user_roles(getattr(request, "user", None))
    return {"cockpit_roles": roles, **{f"is_{role}": role in roles for role in ROLES}}


class RoleBackend(ModelBackend):
    """Django's model backend, plus: the admin role holds every Django permission."""

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        return has_role(user_obj, ADMIN) or super().has_perm(user_obj, perm, obj)

    def has_module_perms(self, user_obj, app_label) -> bool:
        return has_role(user_obj, ADMIN) or super().has_module_perms(user_obj, app_label)


class CockpitAdminSite(admin.AdminSite):
    site_header = "Agent Cockpit administration"
    site_title = "Agent Cockpit admin"

    def has_permission(self, request) -> bool:
        return has_role(request.user, ADMIN)
