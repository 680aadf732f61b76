"""The alert path drilled end to end (issue 11, item 4; runbook sections "Drill").

A real Prometheus and a real Alertmanager (Debian packages) load the prod stack's rendered
rules and routing (the files ``make plan`` writes to build/prod/), changed only as
tests/tools/alert_drill.py documents: durations divided by one factor, receivers pointed at
local stand-ins. Prometheus scrapes the RabbitMQ node(s)' rabbitmq_prometheus endpoints the
ServiceMonitor declares, and a synthetic service emitting the metric contract with chaos-lite
failure injection. Each scenario measures the time from the fault to the notification.

The first tests (unmarked, fast) prove that the drilled configuration differs from the
rendered one only in what the drill may change; the scenarios carry the ``drill`` marker.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pika
import pytest
import yaml
from conftest import require_tool
from tools import alert_drill as D
from tools.rabbitmq_cluster import RabbitCluster
from tools.rabbitmq_node import SERVER, RabbitNode

from components.render import alertmanager as AM
from components.render import broker as B
from components.render import rules as R

SERVICE = "candystore"  # the synthetic service (one of prod's services)
MISSING = object()


# ----------------------------------------------------------------------------- the rendered artefacts
def build_artefacts(planned_stack, out: Path) -> tuple[dict, dict]:
    """The rules and routing exactly as `make plan` writes them (dryrun.plan.write_artefacts)."""
    from dryrun import plan

    plan.write_artefacts(planned_stack.result, out)
    rules = yaml.safe_load((out / "prometheus" / "rules.yaml").read_text())
    routing = yaml.safe_load((out / "alertmanager" / "alertmanager.yaml").read_text())
    return rules, routing


def leaf_diff(a, b, path: tuple = ()) -> list[tuple[tuple, object, object]]:
    """Every leaf where ``a`` and ``b`` differ, as (path, a value or MISSING, b value or MISSING)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            out += leaf_diff(a.get(key, MISSING), b.get(key, MISSING), (*path, key))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in leaf_diff(x, y, (*path, i))]
    return [] if a == b else [(path, a, b)]


def classify(path: tuple, old, new, secret_dir: Path, base: str) -> str:
    """Which permitted change a difference is; AssertionError for anything else."""
    key = path[-1]
    if key in (*D.RULE_DURATION_KEYS, *D.ROUTE_DURATION_KEYS, "resolve_timeout"):
        assert old is not MISSING and new == D.shorten(old), (path, old, new)
        return "duration"
    assert path[0] == "receivers", f"only receivers may change besides durations: {path} {old!r} -> {new!r}"
    kind = path[2]
    if key in ("routing_key_file", "api_url_file", "url_file"):
        assert Path(old).parent == Path(AM.SECRET_DIR) and Path(new).parent == secret_dir, (path, old, new)
        assert Path(old).name == Path(new).name, (path, old, new)
        return "credential file moved"
    if kind == "pagerduty_configs" and key == "url":
        assert old is MISSING and new == base + D.PAGERDUTY_PATH, (path, old, new)
        return "receiver url"
    raise AssertionError(f"not a permitted drill change: {path} {old!r} -> {new!r}")


BASE = "http://127.0.0.1:9"  # a receiver address for the diff proof (nothing listens there)


@pytest.fixture(scope="module")
def prod_artefacts(planned, tmp_path_factory):
    return build_artefacts(planned["prod"], tmp_path_factory.mktemp("build-prod"))


def test_drilled_rules_differ_only_in_durations(prod_artefacts, tmp_path):
    rules, _ = prod_artefacts
    drilled = D.drill_rules(rules)
    diff = leaf_diff(rules, drilled)
    kinds = {classify(p, a, b, tmp_path, BASE) for p, a, b in diff}
    assert kinds == {"duration"}
    durations = sum("for" in r for g in rules["groups"] for r in g["rules"]) + sum(
        "interval" in g for g in rules["groups"]
    )
    assert len(diff) == durations > 0
    # and the drilled copy is a valid rules file for the real promtool
    promtool = require_tool("promtool")
    import subprocess

    (tmp_path / "drilled.yaml").write_text(yaml.safe_dump(drilled))
    proc = subprocess.run([promtool, "check", "rules", str(tmp_path / "drilled.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_drilled_routing_differs_only_in_durations_and_receiver_endpoints(prod_artefacts, tmp_path):
    _, routing = prod_artefacts
    drilled = D.drill_alertmanager(routing, tmp_path, BASE)
    diff = leaf_diff(routing, drilled)
    kinds = [classify(p, a, b, tmp_path, BASE) for p, a, b in diff]
    assert set(kinds) == {"duration", "credential file moved", "receiver url"}
    # PagerDuty routing key, Slack webhook, the dead-man's switch url_file (read as deployed)
    assert kinds.count("credential file moved") == 3
    assert kinds.count("receiver url") == 1  # the PagerDuty receiver's url, added


def test_the_diff_proof_refuses_any_other_change(prod_artefacts, tmp_path):
    rules, routing = prod_artefacts
    tampered = D.drill_rules(rules)
    [broker] = [g for g in tampered["groups"] if g["name"] == "event-backbone-broker"]
    dlq = broker["rules"][0]
    assert dlq["alert"] == "DeadLetterQueueBacklog" and "1000" in dlq["expr"]
    dlq["expr"] = dlq["expr"].replace("1000", "10")  # a threshold lowered: not a drill change
    with pytest.raises(AssertionError, match="only receivers may change"):
        for p, a, b in leaf_diff(rules, tampered):
            classify(p, a, b, tmp_path, BASE)
    for change in (
        lambda c: c["route"]["routes"][2].update(receiver="slack"),
        lambda c: c["receivers"][1]["pagerduty_configs"][0].update(severity="warning"),
        lambda c: c["route"].update(group_wait="2s"),  # a different factor
    ):
        drilled = D.drill_alertmanager(routing, tmp_path, BASE)
        change(drilled)
        with pytest.raises(AssertionError):
            for p, a, b in leaf_diff(routing, drilled):
                classify(p, a, b, tmp_path, BASE)


def test_drill_prometheus_uses_the_cluster_intervals_shortened(planned):
    s = planned["prod"].settings
    monitor = B.service_monitor(s, "rabbitmq-ca")
    config = D.prometheus_config(monitor, ["127.0.0.1:1"], {SERVICE: "127.0.0.1:2"}, "127.0.0.1:3")
    cluster_scrape = monitor["spec"]["endpoints"][0]["interval"]
    assert {e["interval"] for e in monitor["spec"]["endpoints"]} == {cluster_scrape}
    assert D.duration_ms(config["global"]["scrape_interval"]) * D.FACTOR == D.duration_ms(cluster_scrape)
    assert D.duration_ms(config["global"]["evaluation_interval"]) * D.FACTOR == D.duration_ms(
        D.CLUSTER_EVALUATION_INTERVAL
    )
    jobs = config["scrape_configs"]
    assert [(j["metrics_path"], j.get("params")) for j in jobs[:2]] == [
        (e["path"], e.get("params")) for e in monitor["spec"]["endpoints"]
    ]
    with pytest.raises(ValueError):
        D.shorten("1m", 7)  # a factor that does not divide a duration exactly is refused


def test_servicemonitor_endpoints_of_one_pod_get_distinct_target_labels(stack):
    """The operator gives both endpoints' targets the same labels (same pod, same port name);
    only a relabeling that differs between them keeps their `up` series apart."""
    endpoints = B.service_monitor(stack.settings, "rabbitmq-ca")["spec"]["endpoints"]
    assert len({e["port"] for e in endpoints}) == 1 and len(endpoints) == 2
    for e in endpoints:
        assert {"sourceLabels": ["__metrics_path__"], "targetLabel": "metrics_path"} in e["relabelings"]
    assert len({e["path"] for e in endpoints}) == len(endpoints)


# ----------------------------------------------------------------------------- the drill
class Drill:
    def __init__(self, settings, broker: RabbitCluster, prometheus, alertmanager, receivers, service, routing_key):
        self.s, self.broker, self.prometheus, self.alertmanager = settings, broker, prometheus, alertmanager
        self.receivers, self.service, self.routing_key = receivers, service, routing_key
        self.nodes: list[RabbitNode] = broker.nodes
        self.timings: dict[str, float] = {}
        self.watchdog_repeat = "0s"  # the drilled Watchdog route's repeat_interval

    def report(self, capsys, line: str) -> None:
        with capsys.disabled():
            print(f"\n[drill] {line}", flush=True)


@pytest.fixture(scope="module")
def drill(planned, tmp_path_factory):
    for tool in (D.PROMETHEUS, D.ALERTMANAGER, SERVER):
        require_tool(tool)
    prod = planned["prod"]
    s = prod.settings
    work = tmp_path_factory.mktemp("drill")
    rules, routing = build_artefacts(prod, work / "build")
    started: list = []
    try:
        t0 = time.monotonic()
        # prod's three nodes, booted with the rendered definitions and additionalConfig
        broker = RabbitCluster.for_stack(work / "broker", s)
        started.append(broker)
        broker.start()
        boot = time.monotonic() - t0
        nodes = broker.nodes
        receivers = D.Receivers().start()
        started.append(receivers)
        service = D.SyntheticService(s.observability.metrics, SERVICE).start()
        started.append(service)
        ksm = D.KubeStateStandIn(
            s.broker.namespace,
            f"{s.broker.cluster_name}-server",
            lambda: sum(1 for n in nodes if n.is_running()),
        ).start()
        started.append(ksm)

        secret_dir = work / "secrets"
        secret_dir.mkdir()
        routing_key = secrets.token_hex(16)
        for name, content in D.secret_files(secret_dir, receivers.base, routing_key).items():
            (secret_dir / name).write_text(content)
            (secret_dir / name).chmod(0o600)
        alertmanager = D.start_alertmanager(
            work / "alertmanager", D.drill_alertmanager(routing, secret_dir, receivers.base)
        )
        started.append(alertmanager)
        monitor = B.service_monitor(s, "rabbitmq-ca")
        targets = [f"127.0.0.1:{n.prom_port}" for n in nodes]
        config = D.prometheus_config(
            monitor,
            targets,
            {SERVICE: service.target, "kube-state-metrics": ksm.target},
            f"127.0.0.1:{alertmanager.port}",
        )
        prometheus = D.start_prometheus(work / "prometheus", config, D.drill_rules(rules))
        started.append(prometheus)
        drill = Drill(s, broker, prometheus, alertmanager, receivers, service, routing_key)
        drill.watchdog_repeat = next(
            r["repeat_interval"]
            for r in D.drill_alertmanager(routing, secret_dir, receivers.base)["route"]["routes"]
            if r["receiver"] == AM.DEADMANS
        )
        drill.timings["broker boot"] = boot
        drill.timings["setup"] = time.monotonic() - t0
        yield drill
    finally:
        for thing in reversed(started):
            close = getattr(thing, "close", None) or thing.stop
            close()


def broker_up(d: Drill) -> list[dict]:
    return D.query(d.prometheus, f"up{{{R.broker_selector(d.s)}}} == 1")


@pytest.mark.drill
def test_drill_servers_listen_on_loopback_only(drill):
    for server in (drill.prometheus, drill.alertmanager):
        assert server.proc
        addresses = D.listening_addresses(server.proc.pid)
        assert addresses, server.name
        assert all(a.startswith(("127.", "[::1]:", "[::ffff:127.")) for a in addresses), (server.name, addresses)


@pytest.mark.drill
def test_drill_broker_node_killed_pages_and_resolves(drill, capsys):
    d = drill
    # two ServiceMonitor endpoints per node: two `up` series only if their targets are labelled apart
    expected = 2 * len(d.nodes)
    assert D.wait_until(lambda: len(broker_up(d)) == expected, timeout=60), D.query(d.prometheus, "up")
    victim = d.broker.leader(f"{SERVICE}.events")  # the node holding a queue leader
    instance = f"127.0.0.1:{d.nodes[victim].prom_port}"
    t_kill = d.broker.kill(victim)
    page = d.receivers.wait(D.pagerduty("BrokerDown"), timeout=90, since=t_kill)
    assert page, [n.body for n in d.receivers.received[-5:]]
    body = page.body
    assert body["routing_key"] == d.routing_key
    payload = body["payload"]
    assert payload["severity"] == "critical"
    details = payload["custom_details"]
    assert details["service"] == d.s.broker.cluster_name
    assert details["runbook"] == f"{d.s.observability.alerting.runbook_base_url}/BrokerDown.md"
    # Alertmanager 0.33's PagerDuty details carry the firing alerts as objects (0.25: a text)
    firing = details["firing"]
    assert instance in (firing if isinstance(firing, str) else json.dumps(firing)), firing
    assert not d.receivers.wait(D.slack("BrokerDown"), timeout=0, since=t_kill), "a critical alert went to Slack"
    d.timings["BrokerDown page after node kill"] = page.at - t_kill
    d.report(capsys, f"node {instance} SIGKILLed -> BrokerDown paged PagerDuty after {page.at - t_kill:.1f}s")

    # The node-count alert (a warning, from kube-state-metrics in the cluster) fires as well, and
    # the Alertmanager inhibits it: BrokerDown is critical for the same service.
    def node_count_inhibited():
        alerts = D.http_json(f"{d.alertmanager.url}/api/v2/alerts?filter=alertname%3D%22BrokerNodeCountLow%22")
        return [a for a in alerts if a["status"]["inhibitedBy"]]

    inhibited = D.wait_until(node_count_inhibited, timeout=60)
    assert inhibited, D.query(d.prometheus, 'ALERTS{alertname="BrokerNodeCountLow"}')
    assert inhibited[0]["labels"]["service"] == d.s.broker.cluster_name
    assert inhibited[0]["annotations"]["description"].startswith(f"{d.s.broker.replicas - 1} of {d.s.broker.replicas}")
    assert not d.receivers.wait(D.slack("BrokerNodeCountLow"), timeout=0, since=t_kill)
    d.report(
        capsys,
        f"BrokerNodeCountLow ({inhibited[0]['annotations']['description'][:24]}...) fired after "
        f"{time.monotonic() - t_kill:.1f}s and is inhibited by BrokerDown (no Slack message)",
    )

    t_start = time.monotonic()
    d.broker.restart(victim)
    t_back = time.monotonic()
    resolved = d.receivers.wait(
        lambda n: D.pagerduty("BrokerDown", "resolve")(n) and n.body["dedup_key"] == body["dedup_key"],
        timeout=90,
        since=t_back,
    )
    assert resolved, [n.body for n in d.receivers.received[-5:]]
    assert resolved.body["routing_key"] == d.routing_key
    d.timings["BrokerDown resolved after node back"] = resolved.at - t_back
    d.report(
        capsys,
        f"node restarted in {t_back - t_start:.1f}s -> resolved notification "
        f"{resolved.at - t_back:.1f}s after it answered",
    )


@pytest.mark.drill
def test_drill_dead_letters_past_the_threshold_name_the_queue(drill, capsys):
    d = drill
    node = d.nodes[0]
    threshold = d.s.observability.thresholds.dlq_backlog_messages
    count = threshold + 100
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=node.amqp_port,
        virtual_host=d.s.vhost,
        credentials=pika.PlainCredentials(B.ADMIN_USER, d.broker.passwords[B.ADMIN_USER]),
    )
    t = d.s.broker.topology
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()  # no publisher confirms (one round trip each): the consumer counts them below
        for i in range(count):
            ch.basic_publish(
                t.exchange, "order.drill.created", f"drill-{i}".encode(), pika.BasicProperties(delivery_mode=2)
            )
        # the consumer gives up on all of them: dead-lettered to dlq.all (and dlq.candystore)
        ch.basic_qos(prefetch_count=count)
        got = []
        ch.basic_consume(f"{SERVICE}.events", lambda c, m, p, b: got.append(m.delivery_tag))
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            conn.process_data_events(time_limit=1)
        assert len(got) == count
        ch.basic_nack(got[-1], multiple=True, requeue=False)
        conn.process_data_events(time_limit=1)
    finally:
        conn.close()
    t_fault = time.monotonic()
    depth = D.wait_until(
        lambda: d.broker.queue("dlq.all").get("messages", 0) >= count,
        timeout=30,
    )
    assert depth, "the rejected messages did not reach dlq.all"
    note = d.receivers.wait(D.slack("DeadLetterQueueBacklog", "dlq.all"), timeout=90, since=t_fault)
    assert note, [n.body for n in d.receivers.received[-5:]]
    attachment = note.body["attachments"][0]
    assert "dlq.all" in attachment["text"] and f"threshold {threshold}" in attachment["text"]
    assert f"{d.s.observability.alerting.runbook_base_url}/DeadLetterQueueBacklog.md" in attachment["text"]
    assert note.body["channel"] == d.s.observability.alerting.slack_channel
    assert not d.receivers.wait(D.pagerduty("DeadLetterQueueBacklog"), timeout=0, since=t_fault)
    d.timings["DeadLetterQueueBacklog to Slack"] = note.at - t_fault
    d.report(capsys, f"{count} messages dead-lettered -> Slack names dlq.all after {note.at - t_fault:.1f}s")


@pytest.mark.drill
def test_drill_publish_failures_page_by_severity(drill, capsys):
    d = drill
    chaos = d.service.set_failure_rate(5)
    assert chaos["chaos"] == {"enabled": True, "failure_rate_pct": 5.0}
    t_fault = time.monotonic()
    page = d.receivers.wait(D.pagerduty("EventPublishSuccessRateLow"), timeout=120, since=t_fault)
    assert page, [n.body for n in d.receivers.received[-5:]]
    payload = page.body["payload"]
    assert page.body["routing_key"] == d.routing_key
    assert payload["severity"] == "critical"
    assert payload["custom_details"]["service"] == SERVICE
    assert payload["custom_details"]["runbook"].endswith("/EventPublishSuccessRateLow.md")
    assert not d.receivers.wait(D.slack("EventPublishSuccessRateLow"), timeout=0, since=t_fault)
    d.timings["EventPublishSuccessRateLow page after 5% failures"] = page.at - t_fault
    d.report(capsys, f"5% publish failures -> EventPublishSuccessRateLow paged after {page.at - t_fault:.1f}s")
    published = d.service.published
    share = published[d.s.observability.metrics.failure_value] / max(1, sum(published.values()))
    d.report(
        capsys,
        f"timings: {json.dumps({k: round(v, 1) for k, v in d.timings.items()})}; failure share so far {share:.3%}",
    )


@pytest.mark.drill
def test_drill_watchdog_reaches_the_deadmans_switch(drill, capsys):
    """Runs last: by then the heartbeat has been arriving for the whole drill."""
    beats = drill.receivers.at(D.DEADMANS_PATH)
    if not beats:
        assert drill.receivers.wait(lambda n: n.path == D.DEADMANS_PATH, timeout=30), "no Watchdog heartbeat"
        beats = drill.receivers.at(D.DEADMANS_PATH)
    assert {b.body["commonLabels"]["alertname"] for b in beats} == {"Watchdog"}
    assert {b.body["receiver"] for b in beats} == {AM.DEADMANS}
    gaps = [b.at - a.at for a, b in zip(beats, beats[1:], strict=False)]
    assert max(gaps, default=0) < 2 * D.duration_ms(drill.watchdog_repeat) / 1000 + 5, gaps
    drill.report(
        capsys,
        f"Watchdog: {len(beats)} heartbeats at the dead-man's switch, largest gap {max(gaps, default=0):.1f}s "
        f"(repeat_interval {drill.watchdog_repeat})",
    )


DRILLED = ("BrokerDown", "BrokerNodeCountLow", "DeadLetterQueueBacklog", "EventPublishSuccessRateLow", "Watchdog")


@pytest.mark.parametrize("alert", DRILLED)
def test_runbooks_of_drilled_alerts_have_a_drill_section(alert):
    from conftest import ROOT

    text = (ROOT / "docs" / "runbooks" / f"{alert}.md").read_text()
    assert "\n## Drill\n" in text and "(alert-drill.md)" in text
    assert alert in {a["alert"] for a in R.alerts(_prod_settings())}


def _prod_settings():
    from components import settings as S
    from dryrun.runner import config_from_yaml

    config, _ = config_from_yaml((Path(__file__).resolve().parent.parent / "Pulumi.prod.yaml").read_text())
    return S.from_config_map(config, "prod")
