"""The OpenAPI schema at /api/schema/ and the Swagger UI at /api/docs/, which work offline."""

import re

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema

SCHEMA = "/api/schema/"
DOCS = "/api/docs/"


@pytest.fixture
def schema(client_as):
    GENERATOR_STATS.reset()
    response = client_as("viewer").get(SCHEMA, {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi_generated_without_warnings(schema):
    validate_schema(schema)
    assert not GENERATOR_STATS, "drf-spectacular warned while generating the schema"


def test_the_schema_documents_the_approval_api_with_its_long_poll(schema):
    assert {"/api/v1/approvals", "/api/v1/approvals/{id}", "/api/v1/approvals/{id}/cancel"} <= set(
        schema["paths"]
    )
    poll = schema["paths"]["/api/v1/approvals/{id}"]["get"]
    assert {p["name"] for p in poll["parameters"]} == {"id", "wait"}
    assert poll["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] in {
        f"#/components/schemas/{name}" for name in schema["components"]["schemas"]
    }


def test_the_schema_documents_the_read_api_and_the_otlp_receiver(schema):
    assert {"/api/v1/runs", "/api/v1/runs/{trace_id}", "/v1/traces"} <= set(schema["paths"])
    assert "/v1/traces" in schema["info"]["description"]
    assert schema["components"]["securitySchemes"]["projectKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A project key, `ck_…`; it speaks for one project.",
    }


def test_the_schema_documents_every_run_filter_and_its_errors(schema):
    runs = schema["paths"]["/api/v1/runs"]["get"]
    parameters = {p["name"]: p["schema"] for p in runs["parameters"]}

    assert set(parameters) == {"agent", "project", "since", "until", "status", "cursor", "limit"}
    assert parameters["since"]["format"] == "date-time"
    assert parameters["status"]["enum"] == ["running", "ok", "error"]
    assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 500)
    assert {"200", "400", "401", "403"} <= set(runs["responses"])
    run_detail = schema["paths"]["/api/v1/runs/{trace_id}"]["get"]
    assert {"200", "401", "403", "404"} <= set(run_detail["responses"])


def test_the_schema_describes_runs_and_their_spans(schema):
    components = schema["components"]["schemas"]

    assert {"trace_id", "tokens", "cost_usd", "links"} <= set(components["Run"]["properties"])
    spans = components["RunDetail"]["properties"]["spans"]
    assert spans["items"] == {"$ref": "#/components/schemas/Span"}
    assert {"span_id", "parent_span_id", "model", "tokens", "attributes"} <= set(
        components["Span"]["properties"]
    )


def test_a_project_key_may_fetch_the_schema(client, ingest_key):
    response = client.get(SCHEMA, HTTP_AUTHORIZATION=f"Bearer {ingest_key}")

    assert response.status_code == 200


def test_the_schema_is_refused_to_anonymous_callers_and_outsiders(client, client_as):
    assert client.get(SCHEMA).status_code == 401
    assert client_as("outsider").get(SCHEMA).status_code == 403


def test_the_docs_page_renders_for_a_viewer_from_local_assets_without_inline_script(client_as):
    response = client_as("viewer").get(DOCS)

    assert response.status_code == 200
    html = response.content.decode()
    assert '<div id="swagger-ui">' in html
    assert "cdn.jsdelivr.net" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    # Every script is loaded from a URL: nothing inline for a content security policy to allow.
    assert re.findall(r"<script>", html) == []


def test_the_swagger_ui_assets_are_shipped_with_the_app():
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert finders.find(f"drf_spectacular_sidecar/swagger-ui-dist/{asset}"), asset


def test_the_docs_start_up_script_points_swagger_ui_at_the_schema(client_as):
    response = client_as("viewer").get(DOCS, {"script": ""})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert SCHEMA in response.content.decode()


def test_the_docs_page_sends_anonymous_visitors_to_log_in(client):
    response = client.get(DOCS)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/api/docs/")


def test_the_docs_page_is_forbidden_to_outsiders(client_as):
    assert client_as("outsider").get(DOCS).status_code == 403
