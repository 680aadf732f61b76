"""Cost control: a monthly consumption budget on the stack's resource group and the action
group its alerts go to."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated

from pydantic import Field, field_validator

from .base import Model

Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")]


class BudgetSettings(Model):
    # In the billing account's currency; 1000/month is the DevOps template's prod alert level.
    amount: int = Field(default=1000, ge=10, le=1_000_000)
    # Consumption budgets start on the first of a month (the API refuses other days).
    start_date: _dt.date = _dt.date(2026, 12, 1)
    contact_emails: list[Email] = Field(default_factory=list)
    # The on-call webhook (e.g. the PagerDuty Azure Monitor integration URL): a secure value.
    oncall_webhook_url: str | None = None

    @field_validator("start_date")
    @classmethod
    def _first_of_month(cls, v: _dt.date) -> _dt.date:
        if v.day != 1:
            raise ValueError("must be the first day of a month (YYYY-MM-01)")
        return v
