"""The event-backbone policy pack. PolicyPack(...) serves gRPC and never returns, so only
this file builds it; the policies live in access.py, audit.py, tls.py, backups.py, hardening.py,
database_access.py, edge.py, assignable_roles.py, replicas.py, images.py, monitoring.py and managed_redis.py
(not redis.py: it would shadow the redis client package on the tests' path)."""

import access
import assignable_roles
import audit
import backups
import database_access
import edge
import hardening
import images
import managed_redis
import monitoring
import replicas
import tls
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="event-backbone",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        *access.POLICIES,
        *audit.POLICIES,
        *tls.POLICIES,
        *backups.POLICIES,
        *hardening.POLICIES,
        *database_access.POLICIES,
        *edge.POLICIES,
        *assignable_roles.POLICIES,
        *managed_redis.POLICIES,
        *replicas.POLICIES,
        *images.POLICIES,
        *monitoring.POLICIES,
    ],
    description="No change may drop TLS or backups on the event-backbone platform.",
)
