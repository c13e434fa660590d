"""A compact field schema of the KubeRay ray.io/v1 CRDs (KubeRay v1.6.2); the core/v1 types they embed (pod
templates, metadata, env, resources) are checked against the official Kubernetes client's models (k8s_core.py).

Transcribed from the generated KubeRay CRD API reference (docs/reference/api.md at tag v1.6.2, mirrored at
https://docs.ray.io/en/master/cluster/kubernetes/references/api.html); the KubeRay CRDs are in no Python package.
`check(obj, kind)` returns one message per key that the type does not have, so a typo such as `minReplica`
or `authOption` fails the tests instead of being silently dropped by the API server.
"""

from typing import Any

from tests.cluster.k8s_core import core_problems

# A type is {field: type}; a type written as [T] is a list of T; "str", "int", "bool", "float" are scalars;
# "map" is an object of string keys to string-like values; "any" is not checked further.
ENUMS: dict[str, set[str]] = {
    "AuthMode": {"disabled", "token"},
    "UpscalingMode": {"Default", "Aggressive", "Conservative"},
    "AutoscalerVersion": {"v1", "v2"},
    "JobSubmissionMode": {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"},
    "RayClusterUpgradeType": {"Recreate", "None"},
    "DeletionPolicyType": {"DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"},
}

TYPES: dict[str, dict[str, Any]] = {
    # --- ray.io/v1 ---
    "RayCluster": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta", "spec": "RayClusterSpec"},
    "RayJob": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta", "spec": "RayJobSpec"},
    "RayClusterSpec": {
        "upgradeStrategy": "RayClusterUpgradeStrategy",
        "authOptions": "AuthOptions",
        "suspend": "bool",
        "managedBy": "str",
        "autoscalerOptions": "AutoscalerOptions",
        "headServiceAnnotations": "map",
        "enableInTreeAutoscaling": "bool",
        "gcsFaultToleranceOptions": "any",
        "headGroupSpec": "HeadGroupSpec",
        "rayVersion": "str",
        "workerGroupSpecs": ["WorkerGroupSpec"],
    },
    "RayClusterUpgradeStrategy": {"type": "RayClusterUpgradeType"},
    "AuthOptions": {"enableK8sTokenAuth": "bool", "secretName": "str", "mode": "AuthMode"},
    "AutoscalerOptions": {
        "resources": "V1ResourceRequirements",
        "image": "str",
        "imagePullPolicy": "str",
        "securityContext": "any",
        "idleTimeoutSeconds": "int",
        "upscalingMode": "UpscalingMode",
        "version": "AutoscalerVersion",
        "env": ["V1EnvVar"],
        "envFrom": ["any"],
        "volumeMounts": ["V1VolumeMount"],
    },
    "HeadGroupSpec": {
        "template": "V1PodTemplateSpec",
        "headService": "any",
        "enableIngress": "bool",
        "resources": "map",
        "labels": "map",
        "rayStartParams": "map",
        "serviceType": "str",
    },
    "WorkerGroupSpec": {
        "suspend": "bool",
        "groupName": "str",
        "replicas": "int",
        "minReplicas": "int",
        "maxReplicas": "int",
        "idleTimeoutSeconds": "int",
        "resources": "map",
        "labels": "map",
        "rayStartParams": "map",
        "template": "V1PodTemplateSpec",
        "scaleStrategy": {"workersToDelete": ["str"]},
        "numOfHosts": "int",
    },
    "RayJobSpec": {
        "activeDeadlineSeconds": "int",
        "backoffLimit": "int",
        "rayClusterSpec": "RayClusterSpec",
        "submitterPodTemplate": "V1PodTemplateSpec",
        "metadata": "map",
        "clusterSelector": "map",
        "submitterConfig": {"backoffLimit": "int"},
        "managedBy": "str",
        "deletionStrategy": "DeletionStrategy",
        "entrypoint": "str",
        "runtimeEnvYAML": "str",
        "jobId": "str",
        "submissionMode": "JobSubmissionMode",
        "entrypointResources": "str",
        "entrypointNumCpus": "float",
        "entrypointNumGpus": "float",
        "ttlSecondsAfterFinished": "int",
        "preRunningDeadlineSeconds": "int",
        "shutdownAfterJobFinishes": "bool",
        "suspend": "bool",
    },
    "DeletionStrategy": {
        "onSuccess": {"policy": "DeletionPolicyType"},
        "onFailure": {"policy": "DeletionPolicyType"},
        "deletionRules": [{"policy": "DeletionPolicyType", "condition": "any"}],
    },
}

REQUIRED: dict[str, set[str]] = {
    "RayCluster": {"apiVersion", "kind", "metadata", "spec"},
    "RayJob": {"apiVersion", "kind", "metadata", "spec"},
    "RayClusterSpec": {"headGroupSpec"},
    "HeadGroupSpec": {"template"},
    "WorkerGroupSpec": {"groupName", "template"},
}

_SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def check(obj: Any, type_: Any, path: str = "") -> list[str]:
    """Every problem found walking `obj` against `type_` (a type name, a [T] list or an inline {field: T})."""
    if type_ == "any":
        return []
    if isinstance(type_, str) and type_.startswith("V1"):  # a core/v1 type: the official client's model
        return core_problems(obj, type_, path)
    if isinstance(type_, list):
        if not isinstance(obj, list):
            return [f"{path}: expected a list, got {type(obj).__name__}"]
        return [msg for i, item in enumerate(obj) for msg in check(item, type_[0], f"{path}[{i}]")]
    if isinstance(type_, dict):
        return _check_object(obj, type_, type_name=None, path=path)
    if type_ in _SCALARS:
        # bool is an int in Python: a bool where a number is expected is a bug in a manifest.
        if not isinstance(obj, _SCALARS[type_]) or (type_ != "bool" and isinstance(obj, bool)):
            return [f"{path}: expected {type_}, got {obj!r}"]
        return []
    if type_ in ENUMS:
        return [] if obj in ENUMS[type_] else [f"{path}: {obj!r} is not one of {sorted(ENUMS[type_])}"]
    if type_ == "map":
        if not isinstance(obj, dict):
            return [f"{path}: expected a map, got {type(obj).__name__}"]
        return [f"{path}.{k}: map values must be strings or numbers" for k, v in obj.items() if isinstance(v, dict | list)]
    return _check_object(obj, TYPES[type_], type_name=type_, path=path)


def _check_object(obj: Any, fields: dict[str, Any], *, type_name: str | None, path: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{path}: expected an object, got {type(obj).__name__}"]
    problems = [f"{path}.{key}: no such field" for key in obj if key not in fields]
    missing = REQUIRED.get(type_name, set()) - obj.keys() if type_name else set()
    problems += [f"{path}.{key}: required field missing" for key in sorted(missing)]
    return problems + [msg for key, value in obj.items() if key in fields for msg in check(value, fields[key], f"{path}.{key}")]
