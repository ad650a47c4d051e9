"""What the MLflow registry and run show beside the numbers: the descriptions of the registered model and of each
version (Markdown, as the UI renders them), and the label-health estimate as metrics and a table.

The MLflow UI renders descriptions as Markdown and drops HTML tags, so a `<placeholder>` vanished from the page
(`{"inputs": }`); every text written here is escaped so that it shows as written.
"""

from __future__ import annotations

from typing import Any

MODEL_MARKER = "**lnlflow** classifier"  # a registered-model description this module wrote (others are the user's)


def markdown_text(text: str) -> str:
    """`text` as Markdown that renders as written: HTML-significant characters as entities, emphasis escaped."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("*", "\\*").replace("`", "\\`")


def version_description(name: str, version: str, how_to_call: str) -> str:
    """A version's description: the model's own 'how to call' text (first: the registry's version list previews
    it), then its URI."""
    return f"{markdown_text(how_to_call)}\n\nLoad as `models:/{name}/{version}`."


def model_description(name: str, dataset: str, classes: list[str]) -> str:
    """The registered model's description: what it is, what its aliases mean, how to load and serve it."""
    shown = ", ".join(str(c) for c in classes[:10]) + (", …" if len(classes) > 10 else "")
    return "\n".join([
        f"{MODEL_MARKER} of {markdown_text(dataset)} ({len(classes)} classes: {markdown_text(shown)}), trained on "
        "noisy labels by the lnlflow pipeline (DVC stages data, noise, stage1, stage2, evaluate; logged by "
        "`lnlflow track`).",
        "",
        "- `champion`: the version with the best accuracy on the clean validation split so far; `candidate`: the "
        "newest version.",
        f"- Python: `mlflow.pyfunc.load_model(\"models:/{name}@champion\")`; REST: `make serve` (or "
        "`lnlflow serve`) in the project prints the curl line.",
        "- Each version's description says what input it takes; its tags name the method, the noise and the scores.",
    ])


def describe(client, name: str, registry: dict[str, Any], how_to_call: str, data: dict[str, Any]) -> None:
    """Describe a new version, and the registered model unless someone else has described it."""
    if registry["new_version"]:
        client.update_model_version(name, registry["version"],
                                    description=version_description(name, registry["version"], how_to_call))
    current = client.get_registered_model(name).description or ""
    wanted = model_description(name, str(data["name"]), [str(c) for c in data["classes"]])
    if current != wanted and (not current.strip() or current.startswith(MODEL_MARKER)):
        client.update_registered_model(name, description=wanted)


def health_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """The ends of the estimated noise rate's interval as run metrics (the estimate itself is top-level)."""
    health = evaluation.get("label_health")
    if not health:
        return {}
    low, high = health["estimated_noise_rate_interval"]
    return {"estimated_noise_rate_low": float(low), "estimated_noise_rate_high": float(high)}


def log_health_tables(mlflow, evaluation: dict[str, Any]) -> None:
    """Per-class estimated noise rates and the top confusions as run tables (not one chart per class)."""
    health = evaluation.get("label_health")
    if not health:
        return
    rows = health["per_class"]
    mlflow.log_table({"class": [r["class"] for r in rows], "n": [r["n"] for r in rows],
                      "estimated_noise_rate": [r["estimated_noise_rate"] for r in rows]},
                     "evaluation/label_health_per_class.json")
    pairs = health["top_confusions"]
    if pairs:
        mlflow.log_table({"given": [p["given"] for p in pairs], "true": [p["true"] for p in pairs],
                          "share": [p["share"] for p in pairs]}, "evaluation/label_health_confusions.json")
