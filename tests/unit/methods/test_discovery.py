"""Methods are found, not listed: each module in components/methods declares its KIND and settings model, and
params.yaml's stage2.method values and stage2.<kind> sections follow; finding them imports no torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from components.config import METHOD_NAMES, METHOD_SECTIONS, TRUSTED_SPLIT_METHODS, Params, Stage2Params
from components.methods import REGISTRY, discover, get_method, scan

ROOT = Path(__file__).resolve().parents[3]


def python(code: str, cwd: Path = ROOT) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_names_registry_and_sections_come_from_the_method_classes():
    found = discover()
    assert METHOD_NAMES == tuple(found.methods) == tuple(REGISTRY)
    assert {"ce", "ido", "metalabelnet", "clidmu", "mwnet", "gce", "sce", "elr", "coteaching", "dividemix"} <= set(
        METHOD_NAMES)
    defaults = Params().stage2
    for kind in METHOD_NAMES:
        cls = get_method(kind)
        assert cls.KIND == kind and f"{cls.__module__}:{cls.__name__}" == REGISTRY[kind]
        if cls.PARAMS is None:
            assert kind not in Stage2Params.model_fields
        else:  # the model config validates with is the class the method module defines
            assert type(getattr(defaults, kind)) is cls.PARAMS is found.sections[kind]
        if cls.SHARED_SECTION:
            assert type(getattr(defaults, cls.SHARED_SECTION)) is cls.SHARED_PARAMS
        # read from the source, through the class's bases, without importing it
        assert METHOD_SECTIONS[kind] == tuple(s for s in (cls.PARAMS and kind, cls.SHARED_SECTION) if s)
    assert get_method("mwnet").SHARED_SECTION == "meta" and get_method("ido").SHARED_SECTION is None
    assert set(TRUSTED_SPLIT_METHODS) == {"metalabelnet", "mwnet"}
    assert list(Stage2Params.model_fields)[-1] == "selection"


@pytest.mark.parametrize("first", ["components.methods.metalabelnet", "components.config"])
def test_one_settings_class_whichever_is_imported_first(first):
    """A method module imported before components.config (discovery then runs in the middle of its import) or
    after it: the method's module and the validated params share one class."""
    out = python(f"""
        import sys, {first}
        from components.config import Params
        from components.methods.meta_common import MetaParams
        from components.methods.metalabelnet import MetaLabelNet, MetaLabelNetParams
        stage2 = Params().stage2
        assert type(stage2.metalabelnet) is MetaLabelNetParams is MetaLabelNet.PARAMS
        assert type(stage2.meta) is MetaParams is MetaLabelNet.SHARED_PARAMS
        print("ok")
    """)
    assert out.strip() == "ok"


TOY = '''
"""`toy`: a method that only a test knows about."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from components.config.section import MethodParams
from components.methods.base import Stage2Method

STEPS = 3


class ToyParams(MethodParams):
    """The toy's settings."""

    flavour: Literal["plain", "fancy"] = "plain"
    steps: int = Field(STEPS, ge=1)


class Toy(Stage2Method):
    """Cross-entropy, by another name."""

    KIND = "toy"
    PARAMS = ToyParams

    def batch_loss(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        logits, _ = self.model(self.splits.x_train[idx])
        return torch.nn.functional.cross_entropy(logits, self.splits.y_train[idx]), logits
'''


def test_a_module_dropped_into_components_methods_is_a_method_with_its_section(tmp_path):
    shutil.copytree(ROOT / "components", tmp_path / "components", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "components" / "methods" / "toy.py").write_text(TOY)
    out = python("""
        import sys
        from components.config import METHOD_NAMES, Params, validate_params
        from components.errors import LnlError
        assert "toy" in METHOD_NAMES and Params().stage2.toy.steps == 3
        params = validate_params({"stage2": {"method": "toy", "toy": {"flavour": "fancy"}}})
        assert params.stage2.toy.flavour == "fancy" and "torch" not in sys.modules
        for raw in ({"stage2": {"method": "toy", "toy": {"stepz": 2}}}, {"stage2": {"method": "toyy"}}):
            try:
                validate_params(raw, source="params.yaml")
            except LnlError as error:
                print(error)
        from components.methods import get_method
        assert get_method("toy").PARAMS is type(params.stage2.toy)
    """, cwd=tmp_path)
    bad_key, bad_method = out.splitlines()
    assert bad_key == "params.yaml: stage2.toy.stepz: unknown key (did you mean 'steps'?)"
    assert bad_method.startswith("params.yaml: stage2.method: unknown method 'toyy'; choose one of ce, ")
    assert bad_method.endswith(", sce, toy (got 'toyy')")


def _package(tmp_path: Path, name: str, modules: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return folder


HEAD = "from components.config.section import MethodParams\n"


@pytest.mark.parametrize(("modules", "message"), [
    ({"a": HEAD + "class A:\n    KIND = 'same'\n", "b": HEAD + "class B:\n    KIND = 'same'\n"},
     "b.py: 'same' is declared again (first in "),
    ({"a": HEAD + "def helper():\n    return 1\nclass AParams(MethodParams):\n    x: int = helper()\n"
           "class A:\n    KIND = 'a'\n    PARAMS = AParams\n"},
     "a.py: building its settings models from the source failed (NameError: name 'helper' is not defined)"),
    ({"a": "import torch\nclass AParams(torch.nn.Module):\n    pass\nclass A:\n    KIND = 'a'\n    PARAMS = AParams\n"},
     "a.py: AParams must be a MethodParams defined in the module from typing, collections.abc, pydantic"),
    ({"a": "class A:\n    KIND = 'a' + 'b'\n"}, "a.py: A.KIND must be a string literal naming a section"),
])
def test_discovery_names_the_file_and_the_problem(tmp_path, modules, message):
    folder = _package(tmp_path, "pkg", modules)
    with pytest.raises(ImportError, match="components/methods/__init__.py") as error:
        scan([str(folder)], f"lnlflow_test_{tmp_path.name}")
    assert message in str(error.value)
