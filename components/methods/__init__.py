"""Stage-two methods, one module each, found by looking: nothing lists them.

A method module declares two class attributes on its method class: `KIND = "<kind>"`, the value of
params.yaml `stage2.method` that chooses it, and `PARAMS = <its settings model>`, a `MethodParams` defined in the
module, which is params.yaml `stage2.<kind>` (a method without settings leaves PARAMS out). A class with
`SHARED_SECTION = "<name>"` and `SHARED_PARAMS = <model>` adds a section several methods read (`stage2.meta`,
declared by `meta_common.MetaMethod`; a method whose class inherits it reads that section too). Adding a method
is adding its module (and its page docs/methods/<kind>.md): `components.config` builds stage2's sections, the
method names and the sections each method reads from what `discover()` finds.

Finding them imports no torch (components.config is read by every stage and must stay cheap): the declarations
are read from each module's source with `ast`, and only the settings models are built, from the module's own
imports of typing, pydantic and components.config, its constants written as literals, and its classes derived
from those. A settings model must therefore use nothing else; when the module is imported for real, its class
statement returns the model built here (components/config/section.py, `prebuilding`).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

LIGHT_IMPORTS = ("__future__", "typing", "collections.abc", "pydantic", "pydantic_core", "components.config")


@dataclass(frozen=True)
class MethodEntry:
    """One discovered method: its kind, where its class is, and its settings model (None: it has no settings)."""

    kind: str
    module: str
    cls: str
    params: type | None
    path: Path
    reads: tuple[str, ...] = ()  # the stage2 sections it reads: its own, then shared ones its class inherits


@dataclass(frozen=True)
class Found:
    """Every method (by kind) and every stage2 section (by name: each method's, then the shared ones), in the
    order of their modules' names."""

    methods: dict[str, MethodEntry] = field(default_factory=dict)
    sections: dict[str, type] = field(default_factory=dict)


def _constant(node: ast.AST) -> object:
    """The literal value of an AST expression; ValueError if it is not a literal."""
    try:
        return ast.literal_eval(node)
    except (TypeError, SyntaxError, RecursionError) as error:  # literal_eval's other ways to refuse
        raise ValueError(str(error)) from None


def _class_attributes(node: ast.ClassDef) -> dict[str, ast.expr]:
    """Name → value expression of the simple assignments in a class body (`X = None` left out: a default)."""
    found: dict[str, ast.expr] = {}
    for item in node.body:
        if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
            name, value = item.targets[0].id, item.value
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
            name, value = item.target.id, item.value
        else:
            continue
        if not (isinstance(value, ast.Constant) and value.value is None):
            found[name] = value
    return found


def _is_light(node: ast.stmt) -> bool:
    def light(name: str) -> bool:
        return any(name == root or name.startswith(root + ".") for root in LIGHT_IMPORTS)

    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and light(node.module or "")
    if isinstance(node, ast.Import):
        return all(light(alias.name) for alias in node.names)
    return False


def _bound_names(node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.ImportFrom):
        return {alias.asname or alias.name for alias in node.names}
    return {alias.asname or alias.name.split(".")[0] for alias in node.names}


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _settings_part(tree: ast.Module) -> list[ast.stmt]:
    """The statements that define the module's settings models: its light imports, literal constants and the
    classes whose bases all come from those (in source order)."""
    part: list[ast.stmt] = []
    known: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and _is_light(node):
            part.append(node)
            known |= _bound_names(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            try:
                _constant(node.value)
            except ValueError:
                continue
            if all(isinstance(target, ast.Name) for target in targets):
                part.append(node)
                known |= {target.id for target in targets}  # type: ignore[attr-defined]
        elif isinstance(node, ast.ClassDef) and node.bases and all(
            _root_name(e.func if isinstance(e, ast.Call) else e) in known for e in (*node.bases, *node.decorator_list)
        ):
            part.append(node)
            known.add(node.name)
    return part


def _problem(path: Path, what: str) -> ImportError:
    return ImportError(f"{path}: {what} (see components/methods/__init__.py)")


def _build_settings(name: str, path: Path, part: list[ast.stmt]) -> dict[str, object]:
    """Run the settings part of module `name` (defined in `path`) and return its namespace."""
    from components.config.section import prebuilding

    code = compile(ast.Module(body=part, type_ignores=[]), str(path), "exec")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    before = sys.modules.get(name)
    sys.modules[name] = module  # pydantic resolves the models' annotations in their module
    try:
        with prebuilding():
            exec(code, module.__dict__)
    except Exception as error:  # e.g. a NameError: the model uses something the settings part does not hold
        raise _problem(path, f"building its settings models from the source failed ({type(error).__name__}: "
                             f"{error}); they may use only {', '.join(LIGHT_IMPORTS[1:])} and literal constants"
                       ) from error
    finally:
        if before is None:
            del sys.modules[name]
        else:
            sys.modules[name] = before
    return module.__dict__


@dataclass(frozen=True)
class _Declared:
    label: str  # the method's kind or the shared section's name
    is_method: bool
    cls: str  # the declaring class
    model: str | None  # the name of its settings model


def _declarations(tree: ast.Module, path: Path) -> list[_Declared]:
    """What the module's top-level classes declare: KIND (+ PARAMS) or SHARED_SECTION + SHARED_PARAMS."""
    declared = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        attrs = _class_attributes(node)
        for key, model_key, is_method in (("KIND", "PARAMS", True), ("SHARED_SECTION", "SHARED_PARAMS", False)):
            if key not in attrs:
                continue
            try:
                label = _constant(attrs[key])
            except ValueError:
                label = None
            if not isinstance(label, str) or not label.isidentifier():
                raise _problem(path, f"{node.name}.{key} must be a string literal naming a section")
            model = attrs.get(model_key)
            if model is not None and not isinstance(model, ast.Name):
                raise _problem(path, f"{node.name}.{model_key} must name a settings model of the module")
            if model is None and not is_method:
                raise _problem(path, f"{node.name}.{key} needs {model_key}")
            declared.append(_Declared(label, is_method, node.name, model.id if model is not None else None))
    return declared


def _class_bases(tree: ast.Module, module: str) -> dict[str, list[tuple[str, str]]]:
    """Top-level class → its bases as (module, class), through the module's `from X import Y` imports."""
    imported = {alias.asname or alias.name: (node.module, alias.name) for node in tree.body
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module for alias in node.names}
    return {node.name: [imported.get(base.id, (module, base.id)) for base in node.bases if isinstance(base, ast.Name)]
            for node in tree.body if isinstance(node, ast.ClassDef)}


def scan(paths: Iterable[str], package: str) -> Found:
    """Read every module of `package` found on `paths` and build what it declares (see the module docstring)."""
    from components.config.section import MethodParams, Section

    files: dict[str, Path] = {}
    for info in sorted(pkgutil.iter_modules(list(paths)), key=lambda info: info.name):
        spec = None if info.ispkg else info.module_finder.find_spec(f"{package}.{info.name}")  # type: ignore[call-arg]
        if spec is not None and str(spec.origin).endswith(".py"):
            files[f"{package}.{info.name}"] = Path(str(spec.origin))
    sources = {name: path.read_text() for name, path in files.items()}
    trees: dict[str, ast.Module] = {}

    def tree_of(name: str) -> ast.Module:
        if name not in trees:
            trees[name] = ast.parse(sources[name], str(files[name]))
        return trees[name]

    found, owner, shared_by = Found(), {}, {}
    methods = []
    for name, path in files.items():
        if "KIND" not in sources[name] and "SHARED_SECTION" not in sources[name]:  # most helpers: not parsed
            continue
        module, namespace = sys.modules.get(name), None
        for item in _declarations(tree_of(name), path):
            if item.label in owner:
                raise _problem(path, f"'{item.label}' is declared again (first in {owner[item.label]})")
            owner[item.label] = path
            model = None
            if item.model is not None:
                model = getattr(module, item.model, None)  # imported already (or far enough)
                if model is None:  # build it from the source
                    namespace = namespace or _build_settings(name, path, _settings_part(tree_of(name)))
                    model = namespace.get(item.model)
                base = MethodParams if item.is_method else Section
                if not (isinstance(model, type) and issubclass(model, base)):
                    raise _problem(path, f"{item.model} must be a {base.__name__} defined in the module from "
                                         f"{', '.join(LIGHT_IMPORTS[1:])} and literal constants only")
                found.sections[item.label] = model
            if item.is_method:
                methods.append((item, name, model, path))
            else:
                shared_by[(name, item.cls)] = item.label

    def inherited(module: str, cls: str, seen: set[tuple[str, str]]) -> list[str]:
        """The shared sections class `cls` of `module` declares or inherits (through this package's modules)."""
        if (module, cls) in seen or module not in files:
            return []
        seen.add((module, cls))
        own = [shared_by[(module, cls)]] if (module, cls) in shared_by else []
        bases = _class_bases(tree_of(module), module).get(cls, [])
        return own + [label for base in bases for label in inherited(*base, seen)]

    for item, name, model, path in methods:
        reads = ((item.label,) if model is not None else ()) + tuple(dict.fromkeys(inherited(name, item.cls, set())))
        found.methods[item.label] = MethodEntry(item.label, name, item.cls, model, path, reads)
    shared = [label for label in found.sections if label not in found.methods]
    found.sections.update({label: found.sections.pop(label) for label in shared})  # each method's, then shared
    return found


_FOUND: Found | None = None


def discover() -> Found:
    """Every method and stage2 section under components/methods (read once per process)."""
    global _FOUND
    if _FOUND is None:
        import components.config  # noqa: F401  (importing the config package discovers on the way: once)

        if _FOUND is None:
            _FOUND = scan(__path__, __name__)
    return _FOUND


def __getattr__(name: str) -> dict[str, str]:
    if name == "REGISTRY":  # kind → "module:Class", as discovered
        return {kind: f"{entry.module}:{entry.cls}" for kind, entry in discover().methods.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_method(name: str) -> type:
    """The method class whose KIND is `name` (its module is imported now)."""
    from components.errors import LnlError

    methods = discover().methods
    if name not in methods:
        raise LnlError(f"stage2.method: unknown method '{name}'; choose one of {', '.join(methods)}")
    entry = methods[name]
    return getattr(importlib.import_module(entry.module), entry.cls)
