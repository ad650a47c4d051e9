"""The registry's descriptions render as written in the MLflow UI (Markdown, HTML tags dropped), and the
label-health estimate reaches the run as metrics."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from components.registry_notes import MODEL_MARKER, describe, health_metrics, markdown_text
from components.serving import InputSpec

NAME = "lnlflow-digits"
DIGITS = {"input_shape": [1, 8, 8], "input": {"kind": "digits", "dtype": "float64", "shape": [8, 8],
                                              "range": [0.0, 16.0], "scale": 16.0, "integer": True}}


def rendered(text: str) -> str:
    """`text` as a Markdown renderer shows it (CommonMark with raw HTML, as the UI's), raw HTML tags failing."""
    tokens = MarkdownIt("commonmark", {"html": True}).parse(text)
    raw = [t.content for t in tokens if t.type == "html_block"]
    raw += [c.content for t in tokens for c in (t.children or []) if c.type == "html_inline"]
    assert not raw, f"Markdown would take these as HTML (and the UI would drop them): {raw}"
    page = MarkdownIt("commonmark", {"html": True}).render(text)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_the_old_placeholder_was_eaten_as_html():
    with pytest.raises(AssertionError, match="nested list"):
        rendered('REST: POST /invocations with {"inputs": <nested list>}')


def test_escaped_text_renders_as_written():
    text = 'a <tag> & *stars* `tick` {"inputs": <nested list>} 1 < 2 > 0'
    assert rendered(markdown_text(text)).strip() == text


@pytest.fixture()
def client(mlflow_db):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_db)
    client.create_registered_model(NAME)
    client.create_model_version(NAME, source="file:///nowhere/model")
    return client


def test_version_and_model_descriptions(client):
    how = InputSpec.from_manifest(DIGITS).describe(["label", "probability", *map(str, range(10))])
    assert "<" not in how  # the plain-text metadata says it without a placeholder either
    data = {"name": "digits", "classes": list(range(10))}
    describe(client, NAME, {"new_version": True, "version": "1"}, how, data)
    version = rendered(client.get_model_version(NAME, "1").description)
    assert 'REST: POST /invocations with the JSON body {"inputs": [...]}, the batch as nested lists' in version
    assert f"Load as models:/{NAME}/1." in version and "like load_digits().images" in version
    model = client.get_registered_model(NAME).description
    assert model.startswith(MODEL_MARKER)
    shown = rendered(model)
    assert "classifier of digits (10 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)" in shown
    assert f'mlflow.pyfunc.load_model("models:/{NAME}@champion")' in shown and "make serve" in shown

    describe(client, NAME, {"new_version": False, "version": "1"}, "ignored", data)  # a re-track: nothing changes
    assert client.get_model_version(NAME, "1").description.startswith(markdown_text(how))
    client.update_registered_model(NAME, description="Our digits model; ask Ana before promoting.")
    describe(client, NAME, {"new_version": False, "version": "1"}, how, data)
    assert client.get_registered_model(NAME).description == "Our digits model; ask Ana before promoting."


def test_health_metrics_are_the_interval_ends():
    assert health_metrics({"label_health": {"estimated_noise_rate_interval": [0.38, 0.43]}}) == {
        "estimated_noise_rate_low": 0.38, "estimated_noise_rate_high": 0.43}
    assert health_metrics({}) == {}
