"""Image references through the stack's registry (components/registry.py).

The registry caches each upstream under its own prefix (``docker.io/x/y`` ->
``<login>/docker/x/y``): every image the stack runs names the registry; only
``mcr.microsoft.com`` is pulled directly (Microsoft's own, allowed by the cluster policy).
``registry`` is the login server: ``None`` renders the upstream references (docs, unit
tests), a string or a Pulumi Output renders the cached ones. Tags stay as pinned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MCR = "mcr.microsoft.com"
# upstream registry -> the repository prefix the registry caches it under
CACHE_PREFIXES = {
    "docker.io": "docker",
    "quay.io": "quay",
    "ghcr.io": "ghcr",
    "registry.k8s.io": "k8s",
    MCR: "mcr",
}


def split(image: str) -> tuple[str, str]:
    """``(host, rest)`` with Docker Hub's implicit host and ``library/`` made explicit."""
    if "/" not in image:
        image = f"docker.io/library/{image}"
    first = image.split("/", 1)[0]
    if "." not in first and ":" not in first and first != "localhost":
        image = f"docker.io/{image}"
    host, rest = image.split("/", 1)
    return host, rest


def cached_image(image: str, login: str) -> str:
    """An upstream image reference as pulled through the registry's cache
    (``quay.io/prometheus/prometheus:v3`` -> ``<login>/quay/prometheus/prometheus:v3``;
    Docker Hub short names get their implicit ``docker.io/library/``)."""
    host, rest = split(image)
    if host == login:
        return f"{host}/{rest}"
    if host not in CACHE_PREFIXES:
        raise ValueError(f"{image}: {host} is not an upstream the registry caches ({', '.join(CACHE_PREFIXES)})")
    return f"{login}/{CACHE_PREFIXES[host]}/{rest}"


def _lift(registry: Any, fn: Callable[[str], str]) -> Any:
    if hasattr(registry, "apply"):  # a Pulumi Output (the login server)
        return registry.apply(fn)
    return fn(registry)


def pull(image: str, registry: Any) -> Any:
    """A full image reference (pod specs, CR ``spec.image``); mcr.microsoft.com stays direct."""
    if registry is None or split(image)[0] == MCR:
        return image
    return _lift(registry, lambda login: cached_image(image, login))


def prefix(upstream: str, registry: Any) -> Any:
    """``<login>/<prefix>`` for a chart's registry value that is prepended to its repositories."""
    return _lift(registry, lambda login: f"{login}/{CACHE_PREFIXES[upstream]}")


def chart_image(upstream: str, repository: str, registry: Any) -> dict:
    """A chart's ``{registry, repository}`` image keys for ``<upstream>/<repository>`` through
    the cache (the tag stays the chart's pinned default); ``{}`` without a registry."""
    if registry is None:
        return {}
    return {"registry": registry, "repository": f"{CACHE_PREFIXES[upstream]}/{repository}"}
