"""``dreamviz spectrum DIR -o spec.npy``: the natural magnitude spectrum MACO keeps fixed."""

from __future__ import annotations

from pathlib import Path

from . import add_image_args, emit, int_range, output, parent


def add_parser(sub) -> None:
    p = sub.add_parser(
        "spectrum",
        parents=[parent()],
        help="compute a natural-image magnitude spectrum for --param maco",
        description="Average the Fourier magnitude of every photo in DIR (centre square, resized, "
        "colour-decorrelated) into a .npy file that `dreamviz render --param maco --spectrum "
        "FILE` uses as the fixed magnitude of its images. --fit writes a smooth 1/f^a law "
        "fitted to it instead (better with few photos).",
    )
    p.add_argument("folder", metavar="DIR", help="a folder of JPEG, PNG or WebP photos")
    p.add_argument("-o", "--output", default="spectrum.npy", metavar="FILE", help="a .npy file")
    p.add_argument("--size", type=int_range(16, 1024), default=224, help="grid size (224)")
    p.add_argument("--fit", action="store_true", help="write the fitted 1/f^a law")
    add_image_args(p)
    p.set_defaults(func=run, memory_hint=memory_hint)


def memory_hint(args) -> str:
    return "lower --size"


def run(args) -> int:
    import numpy as np

    from ..errors import UsageError
    from ..io import IMAGE_SUFFIXES, atomic_path, read_image
    from ..param import fit_spectrum_law, natural_spectrum, spectrum_law

    out = output.file(args.output, "-o", [".npy"], "numpy's format, which --spectrum reads")
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{args.folder!r} is not a folder; give a folder of photos")
    paths = sorted(
        q for q in folder.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file()
    )
    if not paths:
        raise UsageError(f"{args.folder!r} holds no JPEG, PNG or WebP photos")
    total = 0
    for path in paths:  # one photo in memory at a time: the mean of their spectra
        total = total + natural_spectrum([read_image(path)], size=args.size)
    mag = total / len(paths)
    if args.fit:
        mag = spectrum_law(args.size, *fit_spectrum_law(mag))
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.save(f, mag.numpy().astype(np.float32))
    emit(out)
    return 0
