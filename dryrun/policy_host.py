"""Run a policy pack over recorded resources the way the Pulumi CLI does.

The pack is started as a plugin process (``python -u -m pulumi.policy <engine> <pack-dir>``,
the module the pulumi SDK ships); it prints the port of its Analyzer gRPC server on its
first line of output. We then call GetAnalyzerInfo, Configure (the policy config file,
with each policy's schema defaults filled in, as the CLI does), Analyze for every resource
and AnalyzeStack once, through the stubs that ship with the SDK.

Properties travel as the engine sends them: engine names, secrets wrapped in Pulumi's
secret signature (the pack unwraps them; only the pack, on loopback, sees them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from .mocks import Registration

LEVELS = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    analyzer_pb2.DISABLED: "disabled",
    getattr(analyzer_pb2, "REMEDIATE", 3): "remediate",
}
LEVEL_VALUES = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "disabled": analyzer_pb2.DISABLED,
}


@dataclass
class Finding:
    policy_pack: str
    policy: str
    enforcement_level: str
    urn: str
    message: str

    def as_json(self) -> dict:
        return {
            "policyPack": self.policy_pack,
            "policy": self.policy,
            "enforcementLevel": self.enforcement_level,
            "urn": self.urn,
            "message": self.message,
        }


def _struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    json_format.ParseDict(_plain(value), s)
    return s


def _plain(value):
    """JSON-able form of recorded inputs (keeping the secret signature dicts as they are)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class PolicyHost:
    def __init__(self, pack_dir: Path, python: str = sys.executable):
        self.pack_dir = Path(pack_dir).resolve()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The engine address is where the pack would send log messages; our policies log nothing.
        self.proc = subprocess.Popen(
            [python, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(self.pack_dir)],
            cwd=self.pack_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = self.proc.stdout, self.proc.stderr
        assert stdout is not None and stderr is not None  # both are pipes (stdout/stderr=PIPE above)
        line = stdout.readline().strip()
        if not line.isdigit():
            self.close()
            raise RuntimeError(f"policy pack did not print its port (got {line!r}): {stderr.read()[-2000:]}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)
        self.info = self.stub.GetAnalyzerInfo(empty_pb2.Empty())

    def close(self) -> None:
        if getattr(self, "channel", None):
            self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def __enter__(self) -> PolicyHost:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the CLI's steps
    def configure(self, config: dict) -> dict[str, tuple[str, dict]]:
        """config: the --policy-pack-config file ({policy: {enforcementLevel?, props...}}).
        Returns what was sent: {policy: (level, properties)}."""
        sent = {}
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for policy in self.info.policies:
            given = dict(config.get(policy.name, {}) or {})
            level = given.pop("enforcementLevel", None) or LEVELS[policy.enforcementLevel]
            schema = json_format.MessageToDict(policy.configSchema.properties) if policy.configSchema.properties else {}
            props = {k: v["default"] for k, v in schema.items() if "default" in v}
            props.update(given)
            unknown = set(given) - set(schema)
            if unknown:
                raise ValueError(f"policy config for {policy.name}: unknown properties {sorted(unknown)}")
            request.policyConfig[policy.name].CopyFrom(
                analyzer_pb2.PolicyConfig(enforcementLevel=LEVEL_VALUES[level], properties=_struct(props))
            )
            sent[policy.name] = (level, props)
        unknown = set(config) - {p.name for p in self.info.policies} - {"all"}
        if unknown:
            raise ValueError(f"policy config names unknown policies: {sorted(unknown)}")
        self.stub.Configure(request)
        return sent

    def _options(self, r: Registration) -> analyzer_pb2.AnalyzerResourceOptions:
        return analyzer_pb2.AnalyzerResourceOptions(protect=r.protect, parent=r.parent or "")

    def analyze(self, registrations: list[Registration]) -> list[Finding]:
        findings: list[Finding] = []
        custom = [r for r in registrations if r.custom]
        for r in custom:
            response = self.stub.Analyze(
                analyzer_pb2.AnalyzeRequest(
                    type=r.type,
                    properties=_struct(r.inputs),
                    urn=r.urn,
                    name=r.name,
                    options=self._options(r),
                )
            )
            findings += self._findings(response, r.urn)
        stack = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r.type,
                    properties=_struct(r.inputs),
                    urn=r.urn,
                    name=r.name,
                    options=self._options(r),
                    parent=r.parent or "",
                    dependencies=r.dependencies,
                )
                for r in custom
            ]
        )
        findings += self._findings(self.stub.AnalyzeStack(stack), "")
        return findings

    def _findings(self, response, default_urn: str) -> list[Finding]:
        return [
            Finding(
                d.policyPackName,
                d.policyName,
                LEVELS.get(d.enforcementLevel, str(d.enforcementLevel)),
                d.urn or default_urn,
                d.message,
            )
            for d in response.diagnostics
        ]


def run_pack(pack_dir: Path, config_file: Path | None, registrations: list[Registration]) -> list[Finding]:
    config = json.loads(config_file.read_text()) if config_file and config_file.exists() else {}
    with PolicyHost(pack_dir) as host:
        host.configure(config)
        return host.analyze(registrations)
