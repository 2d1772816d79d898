"""``dreamviz models``: the model names and whether their weights are available now."""

from __future__ import annotations

from . import parent


def add_parser(sub) -> None:
    p = sub.add_parser(
        "models",
        parents=[parent()],
        help="list models and their weight availability",
        description="List every model dreamviz can load. WEIGHTS is 'bundled' (ships with "
        "dreamviz), 'cached' (in the torch hub cache) or 'download' (fetched on first use).",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..models import list_models

    infos = list_models()
    width = max(len(i.name) for i in infos)
    print(f"{'MODEL':<{width}}  {'WEIGHTS':<8}  INPUT")
    for info in infos:
        print(f"{info.name:<{width}}  {info.weights:<8}  {info.input_size}")
    return 0
