"""Signing and verification with the real `notation` (the testing root, tests/tools/toolchain.py)
against an OCI image layout written here, under the trust policy the prod stack renders
(build/prod/signing/trustpolicy.json, dryrun/signing.py) and with a certificate made to the
stack's Key Vault certificate policy (subject, RSA size, key usage, code-signing EKU): the signed
digest verifies; an unsigned image, an image changed after signing, a tampered signature, a
signature by a key outside the trust store and a repository outside the policy's scopes are
refused. Nothing here touches a registry or the network."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import require_tool

from components.render import signing
from dryrun import signing as signing_files

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _index(layout: Path) -> dict:
    return json.loads((layout / "index.json").read_text())


def _add_to_index(layout: Path, descriptor: dict, tag: str | None = None) -> None:
    index = _index(layout)
    entry = {"mediaType": OCI_MANIFEST, **descriptor}
    if tag:
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index["manifests"].append(entry)
    (layout / "index.json").write_text(json.dumps(index))


def image(layout: Path, content: bytes, tag: str, annotations: dict | None = None) -> str:
    """A one-layer OCI image in `layout` (created when missing); returns its manifest digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    if not (layout / "oci-layout").exists():
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": []}))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        info = tarfile.TarInfo("app/service.py")
        info.size, info.mtime = len(content), 0
        t.addfile(info, io.BytesIO(content))
    layer = _blob(layout, gzip.compress(tar.getvalue(), mtime=0))
    config = _blob(
        layout,
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()]},
                "config": {"User": "10001:10001"},
            }
        ).encode(),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        **({"annotations": annotations} if annotations else {}),
    }
    descriptor = _blob(layout, json.dumps(manifest).encode())
    _add_to_index(layout, descriptor, tag)
    return descriptor["digest"]


def certificate(openssl: str, where: Path, policy: dict) -> tuple[Path, Path]:
    """A self-signed certificate with what the Key Vault certificate policy asks for."""
    x509 = policy["x509CertificateProperties"]
    assert policy["issuerParameters"]["name"] == "Self" and policy["keyProperties"]["keyType"] == "RSA"
    assert x509["keyUsage"] == ["digitalSignature"] and x509["ekus"] == [signing.CODE_SIGNING_EKU]
    where.mkdir(parents=True)
    rdn = "\n".join(part.strip() for part in x509["subject"].split(","))
    (where / "req.cnf").write_text(
        "[req]\ndistinguished_name=dn\nprompt=no\n"
        f"[dn]\n{rdn}\n"
        "[ext]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n"
    )
    key, cert = where / "key.pem", where / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", f"rsa:{policy['keyProperties']['keySize']}", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2"]
        + ["-config", str(where / "req.cnf"), "-extensions", "ext"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return key, cert


class Notation:
    def __init__(self, binary: str, home: Path):
        self.binary, self.home = binary, home
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(home), "NOTATION_EXPERIMENTAL": "1"}
        (home / "notation").mkdir(parents=True, exist_ok=True)

    def configure(self, trust_policy: dict, trusted_cert: Path, key: Path, cert: Path) -> None:
        conf = self.home / "notation"
        store = conf / "truststore" / "x509" / "ca" / signing.TRUST_STORE
        store.mkdir(parents=True, exist_ok=True)
        (store / "signing.pem").write_bytes(trusted_cert.read_bytes())
        for name in ("trustpolicy.json", "trustpolicy.oci.json"):
            (conf / name).write_text(json.dumps(trust_policy))
        self.use_key(key, cert)

    def use_key(self, key: Path, cert: Path) -> None:
        keys = {"default": "ci", "keys": [{"name": "ci", "keyPath": str(key), "certPath": str(cert)}]}
        (self.home / "notation" / "signingkeys.json").write_text(json.dumps(keys))

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, text=True, timeout=120, cwd=self.home
        )

    def sign(self, layout: Path, digest: str) -> None:
        out = self.run("sign", "--signature-format", "cose", "--oci-layout", f"{layout}@{digest}")
        assert out.returncode == 0, out.stdout + out.stderr

    def verify(self, layout: Path, digest: str, scope: str) -> subprocess.CompletedProcess:
        return self.run("verify", "--oci-layout", f"{layout}@{digest}", "--scope", scope)


@pytest.fixture
def setup(planned, tmp_path):
    notation = Notation(require_tool("notation"), tmp_path / "home")
    openssl = require_tool("openssl")
    prod = planned["prod"]
    rendered = signing_files.files(prod.settings, prod.doc)
    trust = json.loads(rendered["signing/trustpolicy.json"])
    policy = json.loads(rendered["signing/certificate-policy.json"])
    key, cert = certificate(openssl, tmp_path / "kv", policy)
    notation.configure(trust, cert, key, cert)
    login = signing_files.login_server(prod.doc)
    return notation, openssl, trust, policy, login, tmp_path


def test_the_rendered_trust_policy_pins_the_certificate_and_the_repositories(planned):
    prod = planned["prod"]
    trust = json.loads(signing_files.files(prod.settings, prod.doc)["signing/trustpolicy.json"])
    login = signing_files.login_server(prod.doc)
    [policy] = trust["trustPolicies"]
    assert trust["version"] == "1.0"
    assert policy["signatureVerification"] == {"level": "strict"}
    assert policy["registryScopes"] == [f"{login}/{svc}" for svc in sorted(prod.settings.services)]
    assert policy["trustStores"] == [f"ca:{signing.TRUST_STORE}"]
    assert policy["trustedIdentities"] == [f"x509.subject: {prod.settings.registry.images.signing.subject}"]
    # what Ratify enforces: the release's recorded trust policies say the same
    [ratify] = prod.inputs("helm.sh/v3:Release", "ratify")["values"]["notation"]["trustPolicies"]
    assert ratify["registryScopes"] == policy["registryScopes"]
    assert ratify["trustedIdentities"] == policy["trustedIdentities"]
    assert ratify["verificatonLevel"] == "strict" and ratify["trustStores"] == ["ca:azurekeyvault"]


def test_a_signed_digest_verifies_under_the_stacks_trust_policy(setup):
    notation, _, _, _, login, tmp = setup
    layout = tmp / "layout"
    digest = image(layout, b"print('candystore')\n", "sha-1")
    notation.sign(layout, digest)
    out = notation.verify(layout, digest, f"{login}/candystore")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Successfully verified" in out.stdout


def test_unsigned_changed_and_tampered_images_are_refused(setup):
    notation, _, _, _, login, tmp = setup
    layout = tmp / "layout"
    scope = f"{login}/candystore"
    signed = image(layout, b"print('candystore')\n", "sha-1")
    notation.sign(layout, signed)

    unsigned = image(layout, b"print('something else')\n", "sha-2")
    out = notation.verify(layout, unsigned, scope)
    assert out.returncode != 0 and "no signature" in (out.stdout + out.stderr).lower(), out.stderr

    # the same image with one annotation more: another digest, which nobody signed
    changed = image(layout, b"print('candystore')\n", "sha-3", annotations={"tampered": "yes"})
    assert changed != signed
    out = notation.verify(layout, changed, scope)
    assert out.returncode != 0, out.stdout

    # the signature envelope altered in place (one byte of the COSE blob): its digest no longer matches
    thumbprint = "io.cncf.notary.x509chain.thumbprint#S256"
    sig = next(m for m in _index(layout)["manifests"] if thumbprint in m.get("annotations", {}))
    manifest = json.loads((layout / "blobs" / "sha256" / sig["digest"].split(":")[1]).read_text())
    envelope = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
    original = envelope.read_bytes()
    envelope.write_bytes(original[:-40] + bytes([original[-40] ^ 0x01]) + original[-39:])
    out = notation.verify(layout, signed, scope)
    assert out.returncode != 0, out.stdout
    envelope.write_bytes(original)
    assert notation.verify(layout, signed, scope).returncode == 0  # and it was only that byte


def test_a_signer_outside_the_trust_store_and_a_foreign_repository_are_refused(setup):
    notation, openssl, _, policy, login, tmp = setup
    layout = tmp / "layout"
    digest = image(layout, b"print('candystore')\n", "sha-1")
    # same subject, another key: the pinned subject alone is not enough, the trust store decides
    key, cert = certificate(openssl, tmp / "impostor", policy)
    notation.use_key(key, cert)
    notation.sign(layout, digest)
    out = notation.verify(layout, digest, f"{login}/candystore")
    assert out.returncode != 0, out.stdout

    good = image(tmp / "second", b"print('audit')\n", "sha-1")
    key, cert = tmp / "kv" / "key.pem", tmp / "kv" / "cert.pem"
    notation.use_key(key, cert)
    notation.sign(tmp / "second", good)
    assert notation.verify(tmp / "second", good, f"{login}/audit").returncode == 0
    # a repository the stack has no service for, or another registry: no trust policy applies
    for scope in (f"{login}/not-a-service", "evil.azurecr.io/audit"):
        out = notation.verify(tmp / "second", good, scope)
        assert out.returncode != 0 and "no applicable trust policy" in out.stderr, (scope, out.stderr)
