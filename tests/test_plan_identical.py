"""The dry run's SDK shortcuts (dryrun/runner.py) change nothing: the same plan.json, byte for byte,
and the same aliases and source positions in every registration the monitor receives."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import ROOT, STACKS

from dryrun import plan as plan_mod
from dryrun import runner
from dryrun.mocks import RecordingMonitor


def _run_capturing(stack: str, stock_sdk: bool, monkeypatch, out) -> tuple[bytes, dict]:
    sent: dict[str, tuple] = {}

    class Capturing(RecordingMonitor):
        def RegisterResource(self, request):
            sent[self.make_urn(request.parent, request.type, request.name)] = (
                [a.SerializeToString(deterministic=True) for a in request.aliases],
                request.stackTrace.SerializeToString(deterministic=True),
                request.sourcePosition.SerializeToString(deterministic=True),
            )
            return super().RegisterResource(request)

    monkeypatch.setattr(runner, "RecordingMonitor", Capturing)
    result = runner.run_stack(stack, stock_sdk=stock_sdk)
    plan_mod.write_plan(result, out)
    return (out / "plan.json").read_bytes(), sent


@pytest.mark.parametrize("stack", STACKS)
def test_shortcuts_give_the_stock_sdks_plan_byte_for_byte(stack, monkeypatch, tmp_path):
    # one call site for both runs: the stack traces the monitor receives include this line
    (stock_plan, stock_sent), (lean_plan, lean_sent) = (
        _run_capturing(stack, stock, monkeypatch, tmp_path / str(stock)) for stock in (True, False)
    )
    assert lean_plan == stock_plan
    assert lean_sent.keys() == stock_sent.keys()
    differing = [urn for urn in stock_sent if stock_sent[urn] != lean_sent[urn]]
    assert not differing, f"the monitor received different aliases or source positions for {differing[:3]}"
    # the comparison covers what the shortcuts touch: azure-native aliases and real stack traces
    assert any(aliases for aliases, _, _ in stock_sent.values())
    traced = [urn for urn, (_, trace, _) in stock_sent.items() if trace]
    assert len(traced) > len(stock_sent) / 2, "most registrations should carry the program's stack trace"
    assert runner._unwrapped, "the lean run looked its type annotations up through the cache"


def test_one_shot_run_gives_the_same_plan_and_freezes_its_heap(tmp_path):
    import gc

    normal = runner.run_stack("dev")
    assert gc.get_freeze_count() == 0
    try:
        frozen = runner.run_stack("dev", one_shot=True)
        assert gc.get_freeze_count() > 0 and gc.isenabled()
    finally:
        gc.unfreeze()
    plan_mod.write_plan(normal, tmp_path / "normal")
    plan_mod.write_plan(frozen, tmp_path / "frozen")
    assert (tmp_path / "normal" / "plan.json").read_bytes() == (tmp_path / "frozen" / "plan.json").read_bytes()


def test_leak_count_matches_the_plain_substring_count():
    import random

    rng = random.Random(9)
    alphabet = "abMoc"
    for _ in range(3000):
        secrets = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7))) for _ in range(rng.randint(0, 6))]
        content = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert plan_mod._count_leaks(secrets, content) == sum(1 for s in secrets if s in content), (secrets, content)
    # and on the mocks' real shapes: a leaked password and private key are both counted
    secrets = ["Mock0123456789abcdef0123-_Pw9", "MOCK" + "ab" * 24, "MockAmqp0123456789abcdef"]
    content = f'{{"a": "x{secrets[1]}y", "b": "Mock0123", "c": "amqps://admin:{secrets[2]}@h"}}'
    assert plan_mod._count_leaks(secrets, content) == 2


def test_plan_resources_are_in_urn_order(planned):
    for p in planned.values():
        urns = [r["urn"] for r in json.loads((p.out_dir / "plan.json").read_text())["resources"]]
        assert urns == sorted(urns)


def test_bench_generator_keeps_the_stacks_service_shapes():
    spec = importlib.util.spec_from_file_location("bench_plan", ROOT / "bench" / "plan.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from components import settings as settings_mod

    text = (ROOT / "Pulumi.prod.yaml").read_text()
    base = settings_mod.from_config_map(runner.config_from_yaml(text)[0], "prod", "event-backbone")
    generated = bench.stack_with_services(text, 9)
    s = settings_mod.from_config_map(runner.config_from_yaml(generated)[0], "prod", "event-backbone")
    services = s.services
    assert len(services) == 9
    shapes = list(base.services.values())
    for i, (name, svc) in enumerate(services.items()):
        shape = shapes[i % len(shapes)]
        assert svc.bindings == shape.bindings and svc.dead_letter_queue == shape.dead_letter_queue
        assert svc.overrides == shape.overrides
        assert (svc.queue is None) == (shape.queue is None) and (svc.queue is None or svc.queue.startswith(name))
        assert (svc.database, svc.scaling, svc.resources) == (shape.database, shape.scaling, shape.resources)
