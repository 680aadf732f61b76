"""Service landing zones: one `services.<name>` entry gives a service its namespace, identity,
secrets, network isolation, quota, scrape config, autoscaling and database (issue 9)."""

from __future__ import annotations

import pytest
from test_settings import errors, mutate

from components import settings as S


# ------------------------------------------------------------------ the services map
def test_everything_derives_from_the_services_map(stack):
    s = stack.settings
    assert s.databases == [svc for svc, cfg in s.services.items() if cfg.database]
    assert set(s.databases) == {"bloodbank", "candystore"}
    assert {f"broker-{svc}" for svc in s.services} <= set(s.secret_names())
    created = {r.inputs.get("databaseName") for r in stack.of_type("dbforpostgresql:Database")}
    assert created == set(s.databases)


@pytest.mark.parametrize(
    "change,expected",
    [
        (
            dict(key="services.candystore.scaling.minReplicas", value=9),
            "Pulumi.dev.yaml: event-backbone:services.candystore.scaling.minReplicas must not exceed"
            " services.candystore.scaling.maxReplicas (4) (got 9)",
        ),
        (
            dict(key="services.candystore.scaling.maxReplicas", value=9),
            "Pulumi.dev.yaml: event-backbone:services.candystore.scaling.maxReplicas must not exceed"
            " services.candystore.resources.pods (8), the namespace's pod quota (got 9)",
        ),
        (
            dict(key="services.bloodbank.scaling", value={"deployment": "bloodbank", "maxReplicas": 2}),
            "Pulumi.dev.yaml: event-backbone:services.bloodbank.scaling needs a queue to scale on:"
            " list the service's bindings",
        ),
        (
            dict(key="services.bloodbank.resources.defaultMemoryLimit", value="8Gi"),
            "Pulumi.dev.yaml: event-backbone:services.bloodbank.resources.defaultMemoryLimit must not exceed 4Gi"
            " (got '8Gi')",
        ),
        (
            dict(key="services.audit.database", value="maybe"),
            "Pulumi.dev.yaml: event-backbone:services.audit.database must be true or false (got 'maybe')",
        ),
        (
            dict(key="services.ca-cert", value={"bindings": []}),
            "Pulumi.dev.yaml: event-backbone:services.ca-cert is a reserved name (a platform namespace or a"
            " platform secret's name); rename the service",
        ),
        (
            dict(key="services.monitoring", value={"bindings": []}),
            "Pulumi.dev.yaml: event-backbone:services.monitoring is a reserved name (a platform namespace or a"
            " platform secret's name); rename the service",
        ),
    ],
    ids=lambda v: v["key"] if isinstance(v, dict) else None,
)
def test_bad_service_entries_give_one_line_each(change, expected):
    assert errors("dev", mutate("dev", **change)) == [expected]


def test_no_services_is_an_error():
    assert errors("dev", mutate("dev", "services", {})) == [
        "Pulumi.dev.yaml: event-backbone:services must list at least one service (got {})"
    ]


def test_the_old_places_are_gone():
    # broker.topology.services and postgres.databases moved into services.<name>
    lines = errors("dev", mutate("dev", "broker.topology.services", {"x": {}}))
    assert len(lines) == 1 and lines[0].startswith("Pulumi.dev.yaml: event-backbone:broker.topology.services ")
    lines = errors("dev", mutate("dev", "postgres.databases", ["bloodbank"]))
    assert len(lines) == 1 and lines[0].startswith("Pulumi.dev.yaml: event-backbone:postgres.databases ")
    assert "services" in S.StackSettings.model_fields
