from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CockpitConfig(AppConfig):
    name = "cockpit"
    verbose_name = "Agent Cockpit"

    def ready(self):
        # Fold passes announce the agents they changed; the fleet tiles are pushed from there.
        from cockpit import live_tiles
        from cockpit.rollups import rollups_folded

        rollups_folded.connect(live_tiles.push_fleet_tiles, dispatch_uid="cockpit-fleet-tiles")


class CockpitAdminConfig(admin_apps.AdminConfig):
    """Django admin, open to the cockpit's admin role rather than to Django's is_staff flag."""

    default = False
    default_site = "cockpit.roles.CockpitAdminSite"
