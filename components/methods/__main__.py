"""`python -m components.methods [KIND]`: the methods params.yaml `stage2.method` can choose; with a KIND, the
stage2 sections that method reads, at their defaults, as params.yaml would hold them (docs/methods/switching.md).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml
from pydantic import BaseModel

from components.config import Params
from components.methods import discover

ROOT = Path(__file__).resolve().parents[2]


def page(kind: str) -> str:
    """Where a method is documented: its docs page, else its module (whose docstring cites the paper)."""
    doc = Path("docs/methods") / f"{kind}.md"
    return str(doc) if (ROOT / doc).is_file() else str(discover().methods[kind].path.relative_to(ROOT))


def sections(kind: str) -> tuple[str, ...]:
    """The stage2 sections method `kind` reads: its own (if it has settings), then shared ones (stage2.meta)."""
    return discover().methods[kind].reads


def _scalar(value: object) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16).removesuffix("\n...\n").strip()


def section_yaml(name: str, model: BaseModel, note: str) -> list[str]:
    """`  name:  # note` and one line per setting, each with its description as a comment."""
    lines = [f"  {name}:".ljust(30) + f"# {note}"]
    values = model.model_dump(mode="json")
    for key, field in type(model).model_fields.items():
        line = f"    {key}: {_scalar(values[key])}"
        lines.append(line.ljust(30) + f"# {field.description}" if field.description else line)
    return lines


def describe(kind: str) -> str:
    """The stage2 block to paste into params.yaml for method `kind`, every setting at its default."""
    stage2 = Params().stage2
    lines = ["stage2:", f"  method: {kind}"]
    for name in sections(kind):
        model = getattr(stage2, name)
        if name == kind:
            note = f"{kind}'s own settings ({page(kind)})"
        else:
            ref = re.search(r"docs/methods/\w+\.md", type(model).__doc__ or "")
            note = f"shared settings ({ref.group(0)})" if ref else "shared settings"
        lines += section_yaml(name, model, note)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m components.methods", description=__doc__)
    parser.add_argument("kind", nargs="?", choices=list(discover().methods), help="show this method's sections")
    args = parser.parse_args(argv)
    if args.kind:
        print(describe(args.kind))
        return
    for kind in discover().methods:
        reads = ", ".join(f"stage2.{name}" for name in sections(kind)) or "no section"
        print(f"{kind:<14} {page(kind):<36} reads {reads}")


if __name__ == "__main__":
    main()
