"""Field check of Kubernetes core/apps objects against the official Python client's models (`kubernetes.client`).

`core_problems(obj, "V1StatefulSet")` returns one message per key that the type does not have, walking the
models' `openapi_types` / `attribute_map`, so a typo such as `envs` fails a test instead of being silently
dropped by the API server. Values of maps (labels, resource quantities) and IntOrString fields are not checked.
"""

import re


def core_problems(obj, type_name: str, path: str = "") -> list[str]:
    """One message per key that the Kubernetes type (the official client's model of it) does not have."""
    import kubernetes.client

    if type_name == "object":  # IntOrString and free-form fields
        return []
    if match := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(obj, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(obj) for p in core_problems(item, match[1], f"{path}[{i}]")]
    if type_name.startswith("dict"):  # labels, resource quantities (int or string)
        return [] if isinstance(obj, dict) else [f"{path}: expected a map"]
    scalars = {"str": str, "int": int, "bool": bool}
    if type_name in scalars:
        ok = isinstance(obj, scalars[type_name]) and not (type_name == "int" and isinstance(obj, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {type(obj).__name__}"]
    model = getattr(kubernetes.client, type_name)
    if not isinstance(obj, dict):
        return [f"{path}: expected an object ({type_name})"]
    fields = {json_key: model.openapi_types[attr] for attr, json_key in model.attribute_map.items()}
    problems = []
    for key, value in obj.items():
        if key not in fields:
            problems.append(f"{path}.{key}: no such field of {type_name}")
        else:
            problems += core_problems(value, fields[key], f"{path}.{key}")
    return problems
