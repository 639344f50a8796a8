"""The cockpit's models, one module per feature: rollups (engineer A) and slo (SLOs, alerts,
budgets, webhooks, interventions). Add each module's models here so Django finds them."""

from cockpit.models.quality import Analysis, ReleaseCheck, RunProfile, Score, ScoreDaily  # noqa: F401
from cockpit.models.rollups import (  # noqa: F401
    FoldedRun,
    Rollup,
    RollupDirty,
    RollupSlice,
    RollupWatermark,
)
from cockpit.models.slo import (  # noqa: F401
    AgentControl,
    AlertEvent,
    Budget,
    Intervention,
    Slo,
    Webhook,
    WebhookDelivery,
)
