"""Stage-two methods. One module per method, one entry here; `components.config.METHOD_NAMES` mirrors the keys."""

from __future__ import annotations

import importlib

REGISTRY: dict[str, str] = {
    "ce": "components.methods.ce:CrossEntropy",
    "ido": "components.methods.ido:IDO",
    "metalabelnet": "components.methods.metalabelnet:MetaLabelNet",
    "clidmu": "components.methods.clidmu:ClidMu",
    "mwnet": "components.methods.mwnet:MWNet",
    "gce": "components.methods.gce:GCE",
    "sce": "components.methods.sce:SCE",
    "elr": "components.methods.elr:ELR",
    "coteaching": "components.methods.coteaching:CoTeaching",
    "dividemix": "components.methods.dividemix:DivideMix",
}


def get_method(name: str) -> type:
    """The method class registered under `name` (imported lazily)."""
    from components.errors import LnlError

    if name not in REGISTRY:
        raise LnlError(f"stage2.method: unknown method '{name}'; choose one of {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)
