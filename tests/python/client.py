"""The official Python kubernetes client against skiff server: CRUD, scale, watch, errors.

Usage: client.py KUBECONFIG. Exits non-zero (with a traceback) on the first failed check.
"""
import sys

from kubernetes import client, config, watch

config.load_kube_config(sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()

names = [n.metadata.name for n in core.list_namespace().items]
assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(names), names

cm = core.create_namespaced_config_map(
    "default", {"metadata": {"name": "py", "labels": {"from": "python"}}, "data": {"a": "1"}}
)
assert cm.metadata.name == "py" and int(cm.metadata.resource_version) > 0

dep = apps.create_namespaced_deployment(
    "default",
    {
        "metadata": {"name": "pyd"},
        "spec": {
            "selector": {"matchLabels": {"app": "pyd"}},
            "template": {
                "metadata": {"labels": {"app": "pyd"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
            },
        },
    },
)
assert dep.spec.replicas == 1 and dep.spec.strategy.type == "RollingUpdate", dep.spec
assert dep.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"

apps.patch_namespaced_deployment_scale("pyd", "default", {"spec": {"replicas": 3}})
assert apps.read_namespaced_deployment("pyd", "default").spec.replicas == 3

events = [
    (e["type"], e["object"].metadata.name)
    for e in watch.Watch().stream(
        core.list_namespaced_config_map, "default", label_selector="from=python", timeout_seconds=2
    )
]
assert events == [("ADDED", "py")], events

try:
    core.create_namespaced_config_map("default", {"metadata": {"name": "py"}})
    raise AssertionError("creating a duplicate must fail")
except client.exceptions.ApiException as e:
    assert e.status == 409 and e.reason == "Conflict", (e.status, e.reason)

core.delete_namespaced_config_map("py", "default")
try:
    core.read_namespaced_config_map("py", "default")
    raise AssertionError("a deleted configmap must be gone")
except client.exceptions.ApiException as e:
    assert e.status == 404, e.status

print("python client: all checks passed")
