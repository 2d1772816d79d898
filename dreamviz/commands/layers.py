"""``dreamviz layers [MODEL]``: every hookable layer with its type and output shape."""

from __future__ import annotations

from .. import defaults
from . import parent


def add_parser(sub) -> None:
    p = sub.add_parser(
        "layers",
        parents=[parent()],
        help="list a model's layers (name, type, output shape, channels)",
        description="Print one line per hookable layer: dotted name, module type, output shape "
        "at the model's native input size, and where its channels are (e.g. '768 ch, 14x14 "
        "tokens + cls', '96 ch, 56x56, channels-last'). Needs only the architecture, so it "
        "works offline for every model. Use a name as LAYER in LAYER:CHANNEL units.",
    )
    p.add_argument("model", nargs="?", default=defaults.MODEL, help="model name")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..hooks import layers

    table = layers(args.model)
    rows = []
    for info in table.values():
        shape = "x".join(str(s) for s in info.shape) if info.shape else "-"
        if info.layout is not None and info.calls == 1:
            shape = f"{shape:<14}  {info.layout.describe()}"
        if info.calls == 0:
            shape += "  (not run in eval mode)"
        elif info.calls > 1:
            shape += f"  (called {info.calls}x per pass: not hookable)"
        rows.append((info.name, info.type, shape))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for name, typ, shape in rows:
        print(f"{name:<{w0}}  {typ:<{w1}}  {shape}")
    return 0
