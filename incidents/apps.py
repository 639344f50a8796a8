from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "incidents"

    def ready(self):
        # Alerts, releases, interventions and approvals feed open incidents' timelines.
        from incidents import signals

        signals.connect()
