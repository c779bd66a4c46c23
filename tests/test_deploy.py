"""deploy/: the Kubernetes files for a class of hundreds, checked offline.

yamllint on the files; the values, the data volume and its provisioning Job agree with each other and
with what the demo hub sets for learners; the image definition is Binder's (the root requirements and
runtime) plus what a hub needs. With the Zero to JupyterHub chart at hand (SGD_Z2JH_CHART: the folder
`helm pull jupyterhub/jupyterhub --version 4.4.0 --untar` makes, which holds its values.yaml and
values.schema.json), the values are also merged over the chart's defaults and validated against its
schema, as `helm install` would; the chart is not among the packages this project installs, so without it
those tests are skipped. Nothing here runs Helm or Kubernetes: see README, "Beyond one machine".
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tools import classroom

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
VALUES = DEPLOY / "z2jh.yaml"
CHART_VERSION = "4.4.0"
CHART = Path(os.environ.get("SGD_Z2JH_CHART", "/nonexistent"))
needs_chart = pytest.mark.skipif(
    not (CHART / "values.schema.json").is_file(),
    reason="set SGD_Z2JH_CHART to the jupyterhub chart's folder (helm pull jupyterhub/jupyterhub --untar)",
)


def merged(defaults: dict, values: dict) -> dict:
    """``values`` over ``defaults`` as Helm merges them: maps key by key, anything else replaced, null deletes."""
    out = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def schema_errors(values: dict) -> list[str]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(merged(defaults, values))
    ]


def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def manifests() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / "data-volume.yaml").read_text())}


def yamllint(*paths: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "yamllint", "-c", str(DEPLOY / ".yamllint.yaml"), "-s", *map(str, paths)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_yamllint():
    done = yamllint(DEPLOY.relative_to(ROOT))
    assert done.returncode == 0, done.stdout + done.stderr


def test_yamllint_finds_mistakes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALUES.read_text().replace("  defaultUrl: /lab", "  defaultUrl:   /lab\n  defaultUrl: /tree"))
    done = yamllint(bad)
    assert done.returncode != 0 and "duplication of key" in done.stdout


def test_values_name_the_chart_version():
    assert f'"jupyterhub" {CHART_VERSION}' in VALUES.read_text()


@needs_chart
def test_values_pass_the_charts_schema():
    assert schema_errors(values()) == []


@pytest.mark.parametrize(
    "mistake",
    [
        ("singleuser", "memroy", {"limit": "2G"}),  # a misspelt key
        ("singleuser", "storage", {"capacity": 10}),  # a number where the chart wants a quantity string
        ("cull", "timeout", "an hour"),
    ],
)
@needs_chart
def test_the_schema_refuses_mistakes(mistake):
    section, key, value = mistake
    broken = values()
    broken[section][key] = value
    assert schema_errors(broken)


def test_data_volume_and_values_agree():
    v, m = values(), manifests()
    pvc, job = m["PersistentVolumeClaim"], m["Job"]
    env = v["singleuser"]["extraEnv"]
    volume = next(x for x in v["singleuser"]["storage"]["extraVolumes"] if "persistentVolumeClaim" in x)
    mount = next(x for x in v["singleuser"]["storage"]["extraVolumeMounts"] if x["name"] == volume["name"])
    # every learner mounts the provisioned volume read-only where SGD_DATA points, with the hub's settings
    assert volume["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"], "readOnly": True}
    assert mount["readOnly"] is True and mount["mountPath"] == env["SGD_DATA"]
    assert env["SGD_DATA_READONLY"] == "1" and env["SGD_DATA_ADMIN"] and env["OMP_NUM_THREADS"] == "1"
    assert set(pvc["spec"]["accessModes"]) & {"ReadWriteMany", "ReadOnlyMany"}
    # the Job provisions that volume, from the learners' image, then takes every write permission away
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    image = v["singleuser"]["image"]
    assert container["image"] == f"{image['name']}:{image['tag']}"
    assert {"name": "SGD_DATA", "value": env["SGD_DATA"]} in container["env"]
    assert container["volumeMounts"] == [{"name": "sgd-data", "mountPath": env["SGD_DATA"]}]
    assert spec["volumes"] == [{"name": "sgd-data", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}}]
    script = " ".join(container["args"])
    assert "python -m helpers provision" in script and 'chmod -R a-w "$SGD_DATA"' in script


def test_the_demo_hub_sets_the_same_for_learners():
    config = (ROOT / "hub" / "jupyterhub_config.py").read_text()
    for name in values()["singleuser"]["extraEnv"]:
        assert f'"{name}"' in config, f"the demo hub does not set {name} for learners"


def test_the_image_is_binders_plus_the_hub():
    image = DEPLOY / "image"
    assert (image / "runtime.txt").read_text() == (ROOT / "runtime.txt").read_text()
    lines = [x.strip() for x in (image / "requirements.txt").read_text().splitlines()]
    wanted = [x.strip() for x in (ROOT / "requirements.txt").read_text().splitlines() if x.strip() and x[0] != "#"]
    assert [x for x in lines if x in wanted] == wanted, (
        "deploy/image/requirements.txt must hold the root's requirements"
    )
    assert f"sgd-helpers @ git+{classroom.repository()}@{classroom.BRANCH}" in lines
    assert any(x.startswith("nbgitpuller") for x in lines)
    assert not any(x.startswith("jupyterhub") for x in lines)  # repo2docker brings the single-user server
    assert sorted(p.name for p in image.iterdir()) == ["requirements.txt", "runtime.txt"]
