from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CockpitConfig(AppConfig):
    name = "cockpit"
    verbose_name = "Agent Cockpit"


class CockpitAdminConfig(admin_apps.AdminConfig):
    """Django admin, open to the cockpit's admin role rather than to Django's is_staff flag."""

    default = False
    default_site = "cockpit.roles.CockpitAdminSite"
