"""The interactive docs at /docs: every operation grouped under a described tag, create bodies with examples."""

import httpx

from tests.farm import Farm

FRONT_DOORS = ("predictions", "openai", "fal", "eachlabs")


def test_docs_group_operations_under_described_tags(gateway: Farm) -> None:
    docs = httpx.get(f"{gateway.url}/docs")
    spec = httpx.get(f"{gateway.url}/openapi.json").json()

    assert docs.status_code == 200 and "swagger-ui" in docs.text
    described = [tag["name"] for tag in spec["tags"] if tag.get("description")]
    assert all(door in described for door in FRONT_DOORS)
    used = {tag for path in spec["paths"].values() for operation in path.values() for tag in operation["tags"]}
    assert used <= set(described), used - set(described)  # no operation lands in an undescribed group
    assert "/" not in spec["paths"]  # the playground page is not an API operation


def test_create_bodies_carry_examples(gateway: Farm) -> None:
    schemas = httpx.get(f"{gateway.url}/openapi.json").json()["components"]["schemas"]

    assert schemas["ModelPredictionCreate"]["properties"]["input"]["examples"][0]["prompt"] == "a red fox in snow"
    assert schemas["PredictionCreate"]["properties"]["version"]["examples"] == [
        "stability-ai/stable-diffusion-3.5-medium"
    ]
    assert schemas["ImageGeneration"]["properties"]["prompt"]["examples"] == ["a red fox in snow"]
    assert "examples" in schemas["EachlabsCreate"]["properties"]["input"]
