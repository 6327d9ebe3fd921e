"""JSON schemas for the two KEDA kinds the manifests use (keda.sh/v1alpha1), written from KEDA's documented
fields (https://keda.sh/docs/latest/reference/scaledobject-spec/ and …/authentication/): the Kubernetes
schemas that kubernetes-validate bundles know no custom resources.

Strict like kubernetes-validate's `--strict`: an unknown field (a typo) is an error. Only what the farm uses
plus KEDA's required fields are described; a field KEDA has but the farm does not use is refused too, so add
it here (from KEDA's docs) when a manifest starts using it.
"""

from typing import Any

NAME = {"type": "string", "minLength": 1}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": NAME, "namespace": NAME, "labels": STRING_MAP, "annotations": STRING_MAP},
    "additionalProperties": False,
}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or [], "additionalProperties": False}


def _resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {"apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": kind}, "metadata": METADATA, "spec": spec},
        ["apiVersion", "kind", "metadata", "spec"],
    )


_SCALING_POLICY = _object(
    {
        "type": {"enum": ["Pods", "Percent"]},
        "value": {"type": "integer", "minimum": 1},
        "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
    },
    ["type", "value", "periodSeconds"],
)
_SCALING_RULES = _object(
    {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {"type": "array", "items": _SCALING_POLICY},
    }
)
_TRIGGER = _object(
    {
        "type": NAME,
        "name": {"type": "string"},
        "metadata": STRING_MAP,  # KEDA takes every scaler parameter as a string
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "authenticationRef": _object(
            {"name": NAME, "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}}, ["name"]
        ),
    },
    ["type", "metadata"],
)

SCALED_OBJECT = _resource(
    "ScaledObject",
    _object(
        {
            "scaleTargetRef": _object(
                {"name": NAME, "kind": {"type": "string"}, "apiVersion": {"type": "string"}}, ["name"]
            ),
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "idleReplicaCount": {"type": "integer", "minimum": 0},
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "initialCooldownPeriod": {"type": "integer", "minimum": 0},
            "advanced": _object(
                {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "horizontalPodAutoscalerConfig": _object(
                        {
                            "name": {"type": "string"},
                            "behavior": _object({"scaleUp": _SCALING_RULES, "scaleDown": _SCALING_RULES}),
                        }
                    ),
                }
            ),
            "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
        },
        ["scaleTargetRef", "triggers"],
    ),
)

TRIGGER_AUTHENTICATION = _resource(
    "TriggerAuthentication",
    _object(
        {
            "secretTargetRef": {
                "type": "array",
                "minItems": 1,
                "items": _object({"parameter": NAME, "name": NAME, "key": NAME}, ["parameter", "name", "key"]),
            }
        },
        ["secretTargetRef"],
    ),
)

SCHEMAS = {"ScaledObject": SCALED_OBJECT, "TriggerAuthentication": TRIGGER_AUTHENTICATION}
