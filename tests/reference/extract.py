"""Derive the committed reference extract from ../shared/reference (the pinned charts'
default values and the CRD schemas), so that a clone of the project alone can test.

    .venv/bin/python tests/reference/extract.py [--reference ../shared/reference]

Writes, next to this script:
- crds/<group>_<plural>.json: {"group", "kind", "versions": {name: openAPIV3Schema}} with
  every ``description`` removed (the schema is what validates; the prose is not needed);
- charts/<chart>-<version>.keys.json: every key path the chart's values.yaml defines,
  and the paths whose default is an empty map or null (free-form: any key below is valid);
- charts/<chart>-<version>.schema.json: the chart's values.schema.json without descriptions.

``tests/test_reference.py`` re-runs the extraction when the reference folder is present and
fails if the committed extract differs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_REFERENCE = HERE.parent.parent.parent / "shared" / "reference"


def strip_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_descriptions(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def crd_extract(path: Path) -> tuple[str, dict]:
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"]
    out = {
        "group": spec["group"],
        "kind": spec["names"]["kind"],
        "versions": {v["name"]: strip_descriptions(v["schema"]["openAPIV3Schema"]) for v in spec["versions"]},
    }
    return f"{spec['group']}_{spec['names']['plural']}.json", out


def key_paths(values: Any, prefix: str = "") -> tuple[set[str], set[str]]:
    """(all key paths, free-form paths: those whose default is an empty map or null, such as
    Jaeger's `userconfig`, where the chart takes whatever it is given)."""
    keys, open_maps = set(), set()
    if values is None and prefix:
        open_maps.add(prefix)
    if isinstance(values, dict):
        if not values and prefix:
            open_maps.add(prefix)
        for k, v in values.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            keys.add(path)
            sub_keys, sub_open = key_paths(v, path)
            keys |= sub_keys
            open_maps |= sub_open
    return keys, open_maps


def chart_extract(chart_dir: Path) -> dict[str, dict]:
    values = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    keys, open_maps = key_paths(values)
    files = {f"{chart_dir.name}.keys.json": {"chart": chart_dir.name, "keys": sorted(keys), "openMaps": sorted(open_maps)}}
    schema = chart_dir / "values.schema.json"
    if schema.exists():
        files[f"{chart_dir.name}.schema.json"] = strip_descriptions(json.loads(schema.read_text()))
    return files


def extract(reference: Path) -> dict[str, dict]:
    """relative path (below tests/reference) -> JSON document."""
    out: dict[str, dict] = {}
    for crd in sorted((reference / "crds").glob("*.yaml")):
        name, doc = crd_extract(crd)
        out[f"crds/{name}"] = doc
    for chart in sorted(p for p in (reference / "charts").iterdir() if p.is_dir()):
        for name, doc in chart_extract(chart).items():
            out[f"charts/{name}"] = doc
    return out


def render(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    args = parser.parse_args()
    for relative, doc in extract(args.reference).items():
        path = HERE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(doc))
        print(f"wrote {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
