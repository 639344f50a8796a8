"""The cockpit's models, one module per feature: rollups (engineer A) and slo (SLOs, alerts,
budgets, webhooks, interventions). Add each module's models here so Django finds them."""

from cockpit.models.rollups import FoldedRun, Rollup, RollupDirty, RollupWatermark  # noqa: F401
from cockpit.models.slo import (  # noqa: F401
    AgentControl,
    AlertEvent,
    Budget,
    Intervention,
    Slo,
    Webhook,
    WebhookDelivery,
)
