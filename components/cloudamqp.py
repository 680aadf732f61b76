"""Optional managed backend (``broker.backend: cloudamqp``): a dedicated CloudAMQP instance,
its alarms (DLQ depth, disk, memory) routed to PagerDuty and Slack, and the *same* topology
(``components.render.broker.definitions``) applied through the RabbitMQ provider."""

from __future__ import annotations

import json
import urllib.parse

import pulumi
import pulumi_cloudamqp as cloudamqp
import pulumi_rabbitmq as rabbitmq

from .broker import store_connection_strings, store_monitor_connection_string
from .render import broker as render
from .settings import StackSettings
from .vault import Vault


class CloudAmqpBroker(pulumi.ComponentResource):
    amqps_endpoint: pulumi.Output[str]
    management_url: pulumi.Output[str]
    connection_string_uris: dict[str, pulumi.Output[str]]
    monitor_url_uri: pulumi.Output[str]

    def __init__(self, name: str, settings: StackSettings, vault: Vault, opts: pulumi.ResourceOptions | None = None):
        super().__init__("event-backbone:platform:CloudAmqpBroker", name, None, opts)
        s = settings
        c = s.broker.cloudamqp
        assert c is not None  # settings.broker_rules guarantees it
        child = pulumi.ResourceOptions(parent=self)

        instance = cloudamqp.Instance(
            "instance",
            cloudamqp.InstanceArgs(
                name=s.name("rabbitmq"),
                plan=c.plan,
                region=c.region,
                tags=[f"environment:{s.environment}", "managed-by:pulumi"],
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=s.protect),
        )
        # CloudAMQP ids are integers: the provider's instance_id and alarm recipients take ints,
        # while a Pulumi resource id is always a string.
        instance_id = instance.id.apply(int)

        # Notification type -> its secure credential (a routing key, a webhook URL).
        channels = {"pagerduty": c.pagerduty_routing_key, "slack": c.slack_webhook_url}
        recipients = [
            cloudamqp.Notification(
                kind,
                cloudamqp.NotificationArgs(
                    instance_id=instance_id,
                    type=kind,
                    name=kind,
                    value=pulumi.Output.secret(value),
                ),
                opts=child,
            )
            for kind, value in channels.items()
            if value
        ]
        recipient_ids = [r.id.apply(int) for r in recipients]
        cloudamqp.Alarm(
            "dlq-depth",
            cloudamqp.AlarmArgs(
                instance_id=instance_id,
                type="queue",
                enabled=True,
                recipients=recipient_ids,
                queue_regex=r"^dlq\..*",
                vhost_regex=f"^{s.vhost}$",
                message_type="total",
                value_threshold=c.dlq_alarm_messages,
                time_threshold=300,
            ),
            opts=child,
        )
        cloudamqp.Alarm(
            "disk",
            cloudamqp.AlarmArgs(
                instance_id=instance_id,
                type="disk",
                enabled=True,
                recipients=recipient_ids,
                value_threshold=100 - c.disk_alarm_percent,
                value_calculation="percentage",
                time_threshold=600,
            ),
            opts=child,
        )
        cloudamqp.Alarm(
            "memory",
            cloudamqp.AlarmArgs(
                instance_id=instance_id,
                type="memory",
                enabled=True,
                recipients=recipient_ids,
                value_threshold=c.memory_alarm_percent,
                time_threshold=600,
            ),
            opts=child,
        )

        # The instance URL carries its admin credentials (a secret output).
        admin = instance.url.apply(urllib.parse.urlparse)
        provider = rabbitmq.Provider(
            "rabbitmq",
            rabbitmq.ProviderArgs(
                endpoint=instance.host.apply(lambda h: f"https://{h}"),
                username=pulumi.Output.secret(admin.apply(lambda u: urllib.parse.unquote(u.username or ""))),
                password=pulumi.Output.secret(admin.apply(lambda u: urllib.parse.unquote(u.password or ""))),
            ),
            opts=child,
        )
        self._apply_topology(s, vault, provider)

        self.connection_string_uris = store_connection_strings(s, vault, instance.host)
        self.monitor_url_uri = store_monitor_connection_string(s, vault, instance.host)
        self.amqps_endpoint = instance.host.apply(lambda h: render.amqps_endpoint(s, host=h))
        self.management_url = instance.host.apply(lambda h: f"https://{h}/")
        self.register_outputs({"amqpsEndpoint": self.amqps_endpoint, "managementUrl": self.management_url})

    def _apply_topology(self, s: StackSettings, vault: Vault, provider: rabbitmq.Provider) -> None:
        """Every object of the rendered definitions, one RabbitMQ provider resource each."""
        defs = render.definitions(s, render.placeholder_hashes(s))
        opts = pulumi.ResourceOptions(parent=self, provider=provider)
        vhost = rabbitmq.VHost("vhost", rabbitmq.VHostArgs(name=s.vhost), opts=opts)
        in_vhost = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[vhost]))
        declared: list[pulumi.Resource] = []
        for x in defs["exchanges"]:
            declared.append(
                rabbitmq.Exchange(
                    f"exchange-{x['name']}",
                    rabbitmq.ExchangeArgs(
                        name=x["name"],
                        vhost=s.vhost,
                        settings=rabbitmq.ExchangeSettingsArgs(
                            type=x["type"], durable=x["durable"], auto_delete=x["auto_delete"]
                        ),
                    ),
                    opts=in_vhost,
                )
            )
        for q in defs["queues"]:
            declared.append(
                rabbitmq.Queue(
                    f"queue-{q['name']}",
                    rabbitmq.QueueArgs(
                        name=q["name"],
                        vhost=s.vhost,
                        # JSON keeps the numeric arguments numbers (x-message-ttl, x-max-length, ...)
                        settings=rabbitmq.QueueSettingsArgs(
                            durable=q["durable"],
                            auto_delete=q["auto_delete"],
                            arguments_json=json.dumps(q["arguments"], sort_keys=True),
                        ),
                    ),
                    opts=in_vhost,
                )
            )
        after = pulumi.ResourceOptions.merge(in_vhost, pulumi.ResourceOptions(depends_on=declared))
        for b in defs["bindings"]:
            rabbitmq.Binding(
                f"binding-{b['source']}-{b['destination']}-{b['routing_key']}",
                rabbitmq.BindingArgs(
                    source=b["source"],
                    vhost=s.vhost,
                    destination=b["destination"],
                    destination_type=b["destination_type"],
                    routing_key=b["routing_key"],
                ),
                opts=after,
            )
        users = render.users_and_secrets(s)
        tags = {u["name"]: u["tags"] for u in defs["users"]}
        for p in defs["permissions"]:
            if p["user"] == render.ADMIN_USER:
                continue  # CloudAMQP's own administrator manages the instance
            user = rabbitmq.User(
                f"user-{p['user']}",
                rabbitmq.UserArgs(
                    name=p["user"],
                    password=vault.secrets[users[p["user"]]].value,
                    tags=tags[p["user"]],
                ),
                opts=opts,
            )
            rabbitmq.Permissions(
                f"permissions-{p['user']}",
                rabbitmq.PermissionsArgs(
                    user=user.name,
                    vhost=s.vhost,
                    permissions=rabbitmq.PermissionsPermissionsArgs(
                        configure=p["configure"], write=p["write"], read=p["read"]
                    ),
                ),
                opts=after,
            )
