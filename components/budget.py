"""Cost control: a monthly consumption budget on the stack's resource group (``budget.amount``,
prod 1000/month as the DevOps template's alert level, dev lower) alerting at 80 % and 100 % of
actual cost and at 110 % of forecast cost, to an action group with the configured e-mail
receivers and the on-call webhook (a secret: the URL carries the integration key)."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import consumption, monitor

from .settings import StackSettings

# (notification key, threshold type, percent of budget.amount)
THRESHOLDS = (
    ("actual-80", consumption.ThresholdType.ACTUAL, 80),
    ("actual-100", consumption.ThresholdType.ACTUAL, 100),
    ("forecast-110", consumption.ThresholdType.FORECASTED, 110),
)


def start_date(s: StackSettings) -> str:
    """The API wants the first of a month as an ISO timestamp (settings refuse other days)."""
    return f"{s.budget.start_date.isoformat()}T00:00:00Z"


class Budget(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: StackSettings,
        resource_group_name: pulumi.Input[str],
        resource_group_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("event-backbone:platform:Budget", name, None, opts)
        s = settings
        b = s.budget
        child = pulumi.ResourceOptions(parent=self)
        webhooks = (
            [
                monitor.WebhookReceiverArgs(
                    name="on-call",
                    service_uri=pulumi.Output.secret(b.oncall_webhook_url),
                    use_common_alert_schema=True,
                )
            ]
            if b.oncall_webhook_url
            else None
        )
        group = monitor.ActionGroup(
            "cost-action-group",
            monitor.ActionGroupInitArgs(
                resource_group_name=resource_group_name,
                action_group_name=s.name("ag", "cost"),
                group_short_name=f"{s.name_prefix}{s.environment}cost"[:12],
                location="Global",
                enabled=True,
                email_receivers=[
                    monitor.MicrosoftCommonEmailReceiverArgs(
                        name=f"email-{i}", email_address=address, use_common_alert_schema=True
                    )
                    for i, address in enumerate(b.contact_emails)
                ],
                webhook_receivers=webhooks,
                tags={**s.tags, "environment": s.environment, "managedBy": "pulumi"},
            ),
            opts=child,
        )
        # The stack's Azure-side receivers: the budget and the Redis metric alerts (components/redis.py).
        self.action_group_id = group.id
        consumption.Budget(
            "budget",
            consumption.BudgetArgs(
                scope=resource_group_id,
                budget_name=s.name("budget"),
                amount=b.amount,
                category=consumption.CategoryType.COST,
                time_grain=consumption.TimeGrainType.MONTHLY,
                time_period=consumption.BudgetTimePeriodArgs(start_date=start_date(s)),
                notifications={
                    key: consumption.NotificationArgs(
                        enabled=True,
                        operator=consumption.OperatorType.GREATER_THAN_OR_EQUAL_TO,
                        threshold=percent,
                        threshold_type=kind,
                        contact_emails=list(b.contact_emails),
                        contact_groups=[group.id],
                    )
                    for key, kind, percent in THRESHOLDS
                },
            ),
            opts=child,
        )
        self.register_outputs({})
