"""Hostile inputs to every command: each gets one clear line or a correct result.

A table of command lines, each run in-process through ``dreamviz.cli.main`` in an empty folder,
offline, with tiny sizes and step counts. Every case asserts:

* the exit code (0 success, 1 failure, 2 usage error, 130 interrupted);
* no traceback, no "unexpected" error (the CLI's catch-all: a bug), at most one message line
  on stderr (progress bars aside);
* on failure nothing is left behind (no file, no folder, no temporary file); on success exactly
  the expected files, and every path printed on stdout exists;
* where given, what the one line must say (the fix it names), so a misleading message fails.

The fixtures are hostile files made once: decompression bombs (a real 9000 x 9000 PNG and PNG
headers claiming 20000 x 20000 and 100000 x 100000 px), extreme aspect ratios, truncated,
empty, mislabelled and folder "images", weights holding NaN, inf or pickled code, edited
recipes, broken spectra. A few cases run as real processes (``python -m dreamviz.cli``),
with Ctrl-C (SIGINT) sent during start-up and during a render or a dream.
"""

from __future__ import annotations

import io
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dreamviz.models
from dreamviz.cli import main
from dreamviz.io import read_recipe, save_png

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"

# a progress bar line (tqdm), which is not a message
PROGRESS = re.compile(r"\d+%\||\|\s*\d+/\d+\s*\[|^\s*$")


@dataclass
class Case:
    id: str
    argv: list[str]
    code: int  # 0 success, 1 failure, 2 usage error, 130 interrupted
    files: tuple[str, ...] | None = ()  # exactly what is written (None: what it prints)
    err: str | None = None  # a regex the stderr must match
    raises: tuple[str, BaseException] | None = None  # (attribute to patch, what it raises)


D = "$d"  # the fixtures folder
PHOTO = f"{D}/photo.jpg"
SHORT = {  # command lines that run fast
    "$R": "render --size 32 --steps 2 --device cpu",
    "$S": "saliency --size 32 --device cpu",
    "$DR": "dream --octaves 1 --steps 1 --device cpu",
    "$G": "gallery --size 32 --steps 2 --natural none --quiet --device cpu",
    "$L": "--layer blocks.0 --channels 0-1",
    "$X": "explain --top 1 --steps 2 --render-steps 1 --render-size 16 --device cpu",
    "$M": "--param maco --spectrum",
    "$E": "examples --layer blocks.0 --channels 0-1 --top 2 --workers 0 --quiet --device cpu",
}
WORDS = {"$NUL": "a\x00.png", "$LONG": "a" * 300 + ".png", "$HUGE": "x" * 5000}

# id | exit code | command line (shell words; $R... as above) | files written (* any) | stderr
TABLE = r"""
none                   | 2 |                                          |  |
bogus-command          | 2 | bogus                                    |  | invalid choice
version                | 0 | --version                                |  |
help                   | 0 | --help                                   |  |
models                 | 0 | models                                   |  |
models-extra           | 2 | models extra                             |  |
models-flag            | 2 | models --bogus                           |  |
layers-default         | 0 | layers                                   |  |
layers-unknown         | 2 | layers nosuchmodel                       |  | unknown model 'nosuchmodel'
layers-close           | 2 | layers resnet5                           |  | did you mean: .*resnet50
layers-empty           | 2 | layers ''                                |  | unknown model ''
layers-long            | 2 | layers $HUGE                             |  | unknown model
layers-path            | 2 | layers ../../etc/passwd                  |  | unknown model
layers-two             | 2 | layers resnet18 resnet50                 |  |

render-thresholds-beyond | 2 | $R --thresholds 5 -o x.png             |  | beyond
render-unit-empty      | 2 | $R --unit '' -o x.png                    |  |
render-class-empty     | 2 | $R --class '  ' -o x.png                 |  |
render-unit-layer      | 2 | $R --unit blocks.99:0 -o x.png           |  | unknown layer 'blocks.99'
render-unit-channel    | 2 | $R --unit blocks.12:99999 -o x.png       |  | out of range
render-unit-neg        | 2 | $R --unit blocks.12:-1 -o x.png          |  |
render-unit-abc        | 2 | $R --unit blocks.12:abc -o x.png         |  |
render-unit-colon      | 2 | $R --unit : -o x.png                     |  |
render-unit-nan        | 2 | $R --unit blocks.12:nan -o x.png         |  |
render-class-bogus     | 2 | $R --class nosuchclass -o x.png          |  | unknown class
render-class-1000      | 2 | $R --class 1000 -o x.png                 |  | out of range
render-class-neg       | 2 | $R --class -1 -o x.png                   |  |
render-class-name      | 0 | $R --class TABBY -o x.png                | x.png |
render-model           | 2 | render --model nonexistent               |  | unknown model 'nonexistent'
render-model-close     | 2 | render --model resnet5                   |  | did you mean
render-model-no-target | 2 | $R --model resnet18                      |  | --unit LAYER:CHANNEL
render-model-offline   | 1 | $R --model resnet18 --unit layer3:0 -o x.png |  | download failed.*--weights
render-weights-name-offline | 1 | $R --model resnet18 --weights IMAGENET1K_V1 --unit layer3:0 -o x.png | | IMAGENET1K_V1.*download failed
render-weights-name-unknown | 2 | $R --model resnet18 --weights IMAGENET1K_V9 --unit layer3:0 -o x.png | | IMAGENET1K_V1.*DEFAULT
render-weights-random-resnet | 0 | $R --model resnet18 --weights random --unit layer3:0 -o x.png | x.png |
render-weights-tv-name | 2 | $R --weights IMAGENET1K_V2 -o x.png      |  | no weights named 'IMAGENET1K_V2'.*bundled, random
render-weights-empty   | 2 | $R --weights '' -o x.png                 |  |
render-weights-missing | 2 | $R --weights $d/nope.pth -o x.png        |  | does not exist
render-weights-nan     | 2 | $R --weights $d/nan.pth -o x.png         |  | hold NaN in
render-weights-inf     | 2 | $R --weights $d/inf.pth -o x.png         |  | hold inf in
render-weights-code    | 2 | $R --weights $d/code.pth -o x.png        |  | pickled Python objects
render-weights-negvar  | 1 | $R --weights $d/negvar.pth -o x.png      |  | start image.*check its --weights
render-weights-wrong   | 2 | $R --weights $d/wrong.pth -o x.png       |  | do not fit
render-weights-text    | 2 | $R --weights $d/text.jpg -o x.png        |  |
render-weights-folder  | 2 | $R --weights $d/folder.jpg -o x.png      |  | not a regular file
render-weights-device  | 2 | $R --weights /dev/null -o x.png          |  | not a regular file
render-weights-fifo    | 2 | $R --weights $d/fifo.jpg -o x.png        |  | not a regular file
render-from-fifo       | 2 | render --from $d/fifo.jpg                |  | not a regular file
render-spectrum-device | 2 | $R $M /dev/zero -o x.png                 |  | not a regular file
render-accentuate-layer-empty | 2 | $R --init $d/photo.jpg --accentuate 1 --accentuate-layer '' -o x.png | | empty
saliency-layer-empty   | 2 | $S $d/photo.jpg --method gradcam --layer ''  |  | empty; give a value or leave --layer out
saliency-cmap-empty    | 2 | $S $d/photo.jpg --cmap ''                |  | empty
dream-class-empty      | 2 | $DR $d/photo.jpg --class '' -o x.png     |  | empty; give a value or leave --class out
dream-unit-empty       | 2 | $DR $d/photo.jpg --unit ' ' -o x.png     |  | empty
gallery-natural-blank  | 2 | $G $L --natural '' --out g               |  | empty
render-schedule-bogus  | 2 | $R --lr-schedule linear -o x.png         |  | invalid choice
render-schedule-empty  | 2 | $R --lr-schedule '' -o x.png             |  |
render-schedule-ok     | 0 | $R --lr-schedule constant -o x.png       | x.png |
render-crop-end-one    | 2 | $R --transforms crops --crop-scale-end 0.5 -o x.png |  | LO,HI
render-crop-end-nan    | 2 | $R --transforms crops --crop-scale-end nan,1 -o x.png |  | 0 < LO
render-crop-end-order  | 2 | $R --transforms crops --crop-scale-end 0.9,0.2 -o x.png |  | 0 < LO <= HI
render-crop-end-ok     | 0 | $R --transforms crops --crops 2 --crop-scale-end 0.2,0.4 -o x.png | x.png |
gallery-schedule-bogus | 2 | $G $L --lr-schedule step --out g         |  | invalid choice
gallery-crops-zero     | 2 | $G $L --crops 0 --out g                  |  |
gallery-crop-end-big   | 2 | $G $L --crop-scale-end 2,3 --out g       |  | 0 < LO
explain-gallery-empty  | 2 | $X $d/photo.jpg --gallery '' --out e     |  | empty
explain-gallery-missing | 2 | $X $d/photo.jpg --gallery $d/nope --out e |  | manifest
render-weights-random  | 0 | $R --weights random -o x.png             | x.png |
render-lr-huge         | 0 | $R --lr 1e9 -o x.png                     | x.png | warning: the image saturated.*lower --lr

render-o-empty         | 2 | $R -o ''                                 |  | -o is empty
render-o-blank         | 2 | $R -o '  '                               |  | -o is empty
render-o-folder        | 2 | $R -o $d/folder.jpg                      |  | is a folder.*--out
render-o-dot           | 2 | $R -o .                                  |  | is a folder
render-o-slash         | 2 | $R -o new/                               |  | is a folder
render-o-jpg           | 2 | $R -o x.jpg                              |  | end the name with \.png
render-o-noext         | 2 | $R -o x                                  |  | \.png
render-o-unwritable    | 2 | $R -o /sys/x.png                         |  | cannot write in /sys
render-o-under-file    | 2 | $R -o $d/text.jpg/x.png                  |  | is a file
render-o-long          | 2 | $R -o $LONG                              |  | too long
render-o-nul           | 2 | $R -o $NUL                               |  | NUL
render-out-file        | 2 | $R --out $d/text.jpg                     |  | is a file
render-out-empty       | 2 | $R --out ''                              |  | --out is empty
render-out-unwritable  | 2 | $R --out /sys/render                     |  | cannot write
render-o-and-out       | 2 | $R -o x.png --out d                      |  | not both
render-o-two           | 2 | $R --unit blocks.3:0 --class 1 -o x.png  |  | --out DIR
render-o-deep          | 0 | $R -o a/b/c.png                          | a/b/c.png |
render-o-upper         | 0 | $R -o x.PNG                              | x.PNG |
render-default-name    | 0 | $R                                       | render.png |
render-out-two         | 0 | $R --unit blocks.3:0 --class 1 --out m   | m/0_blocks.3_0.png m/1_1.png |
render-frames          | 0 | $R --thresholds 1,2 -o f.png             | f.png f_0001.png f_0002.png |

render-init-wide       | 0 | $R --init $d/wide.png -o x.png           | x.png |
render-init-photo      | 0 | $R --init $d/photo.jpg -o x.png          | x.png |
render-init-limit      | 2 | $R --init $d/photo.jpg --max-pixels 100 -o x.png | | over the limit of 100 pixels.*--max-pixels
render-accentuate-alone | 2 | $R --accentuate 1 -o x.png              |  | --init
render-maco-init       | 2 | $R --param maco --init $d/photo.jpg --accentuate 1 -o x.png | |
render-from            | 0 | render --from $d/good.png -o x.png       | x.png |
render-from-missing    | 2 | render --from $d/nope.png                |  | does not exist
render-from-photo      | 2 | render --from $d/photo.jpg               |  | no dreamviz recipe
render-from-text       | 2 | render --from $d/text.jpg                |  | cannot read
render-from-folder     | 2 | render --from $d/folder.jpg              |  |
render-from-bomb       | 2 | render --from $d/bomb_100k.png           |  |
render-from-dream      | 2 | render --from $d/r_dream.png             |  | not render
render-from-json       | 2 | render --from $d/r_json.png              |  | not valid JSON
render-spectrum-missing | 2 | $R $M $d/no.npy -o x.png                |  | does not exist
render-spectrum-nan    | 2 | $R $M $d/nan.npy -o x.png                |  | finite
render-spectrum-shape  | 2 | $R $M $d/shape.npy -o x.png              |  | shape
render-spectrum-pickle | 2 | $R $M $d/obj.npy -o x.png                |  | cannot read
render-spectrum-text   | 2 | $R $M $d/text.jpg -o x.png               |  | cannot read
render-spectrum        | 0 | $R $M $d/good.npy -o x.png               | x.png |

saliency-jpg           | 0 | $S $d/photo.jpg -o x.jpg                 | x.jpg |
saliency-webp          | 0 | $S $d/photo.jpg -o x.webp                | x.webp |
saliency-bmp           | 2 | $S $d/photo.jpg -o x.bmp                 |  | \.png, \.jpg
saliency-tiff          | 2 | $S $d/photo.jpg -o x.tiff                |  | \.png, \.jpg
saliency-noext         | 2 | $S $d/photo.jpg -o x                     |  | \.png, \.jpg
saliency-o-empty       | 2 | $S $d/photo.jpg -o ''                    |  | -o is empty
saliency-o-folder      | 2 | $S $d/photo.jpg -o $d/folder.jpg         |  | is a folder.*--out
saliency-out-file      | 2 | $S $d/photo.jpg --out $d/text.jpg        |  | is a file
saliency-out-unwritable | 2 | $S $d/photo.jpg --out /sys/maps         |  | cannot write
saliency-o-two-images  | 2 | $S $d/photo.jpg $d/gray.png -o x.png     |  | one image
saliency-o-all         | 2 | $S $d/photo.jpg --method all -o x.png    |  | one method
saliency-same-stem     | 2 | $S $d/photo.jpg $d/sub/photo.jpg --out m |  | would both write
saliency-same-image-twice | 0 | $S $d/photo.jpg $d/photo.jpg --method gradient --out m | m/photo_gradient.png |
saliency-default-out   | 0 | $S $d/photo.jpg --method gradient        | photo_gradient.png |
saliency-raw           | 0 | $S $d/photo.jpg --method gradient --save-raw --out m | m/photo_gradient.png m/photo_gradient.npy |
saliency-wide          | 0 | saliency --device cpu --method gradcam $d/wide.png -o x.png | x.png | resized to 89\d\dx22
saliency-tall          | 0 | saliency --device cpu --method gradcam $d/tall.png -o x.png | x.png | resized to 22x89\d\d
saliency-ig            | 0 | $S $d/photo.jpg --method ig --steps 8 --baseline 0.5 -o x.png | x.png | completeness error
saliency-blurred       | 0 | $S $d/photo.jpg --method ig --steps 8 --baseline blurred -o x.png | x.png | completeness error
saliency-one-bad-one-good | 1 | $S $d/photo.jpg $d/text.jpg --method gradient --out m | m/photo_gradient.png | text.jpg: cannot read
saliency-method        | 2 | $S $d/photo.jpg --method bogus           |  | unknown method
saliency-method-empty  | 2 | $S $d/photo.jpg --method ''              |  | empty; give a value or leave --method out
saliency-method-commas | 2 | $S $d/photo.jpg --method ,,              |  | names no method
saliency-target        | 2 | $S $d/photo.jpg --target bogus           |  | unknown class
saliency-target-1000   | 2 | $S $d/photo.jpg --target 1000            |  | out of range
saliency-target-unit   | 2 | $S $d/photo.jpg --target blocks.99:0     |  | unknown layer
saliency-layer         | 2 | $S $d/photo.jpg --method gradcam --layer bogus | | unknown layer
saliency-layer-method  | 2 | $S $d/photo.jpg --method gradient --layer blocks.10 |  | gradcam
saliency-cmap          | 2 | $S $d/photo.jpg --cmap bogus             |  | colour map
saliency-model         | 2 | $S $d/photo.jpg --model nonexistent      |  | unknown model
saliency-weights-name  | 2 | $S $d/photo.jpg --weights IMAGENET1K_V2  |  | bundled, random
saliency-weights-nan   | 2 | $S $d/photo.jpg --weights $d/nan.pth     |  | NaN
saliency-weights-negvar | 1 | $S $d/photo.jpg --weights $d/negvar.pth -o x.png | | NaN or inf.*--weights
saliency-device        | 2 | $S $d/photo.jpg --device tpu             |  | unknown device

dream                  | 0 | $DR $d/photo.jpg -o x.png                | x.png |
dream-jpg              | 0 | $DR $d/photo.jpg -o x.jpg                | x.jpg |
dream-webp             | 0 | $DR $d/photo.jpg -o x.webp               | x.webp |
dream-default-name     | 0 | $DR $d/photo.jpg                         | photo_dream.png |
dream-gif-still        | 2 | $DR $d/photo.jpg -o x.gif                |  | \.png
dream-bmp              | 2 | $DR $d/photo.jpg -o x.bmp                |  | \.png
dream-o-empty          | 2 | $DR $d/photo.jpg -o ''                   |  | -o is empty
dream-o-folder         | 2 | $DR $d/photo.jpg -o $d/folder.jpg        |  | is a folder
dream-o-unwritable     | 2 | $DR $d/photo.jpg -o /sys/x.png           |  | cannot write
dream-frames           | 0 | $DR $d/photo.jpg --frames 2 -o a.gif     | a.gif a_0000.png a_0001.png |
dream-frames-bmp       | 2 | $DR $d/photo.jpg --frames 2 -o a.bmp     |  | \.gif
dream-frames-unwritable | 2 | $DR $d/photo.jpg --frames 2 -o /sys/a.gif | | cannot write
dream-zoom-alone       | 2 | $DR $d/photo.jpg --zoom 1.1 -o x.png     |  | --frames
dream-layer            | 2 | $DR $d/photo.jpg --layer bogus -o x.png  |  | unknown layer
dream-unit             | 2 | $DR $d/photo.jpg --unit blocks.10 -o x.png | | needs a channel
dream-class            | 2 | $DR $d/photo.jpg --class bogus -o x.png  |  | unknown class
dream-guide-blank      | 2 | $DR $d/photo.jpg --guide '' -o x.png     |  | empty; give a value or leave --guide out
dream-guide-unit       | 2 | $DR $d/photo.jpg --guide $d/photo.jpg --unit blocks.10:1 -o x.png | | --guide works on layers
dream-guide-thin       | 2 | $DR $d/photo.jpg --guide $d/wide.png -o x.png | | guide image is too small
dream-guide            | 0 | $DR $d/photo.jpg --guide $d/gray.png -o x.png | x.png |
dream-tiny             | 2 | $DR $d/tiny.png -o x.png                 |  | too small
dream-wide             | 2 | $DR $d/wide.png -o x.png                 |  | too small
dream-model            | 2 | $DR $d/photo.jpg --model nonexistent -o x.png | | unknown model
dream-weights-nan      | 2 | $DR $d/photo.jpg --weights $d/nan.pth -o x.png | | hold NaN
dream-weights-negvar   | 1 | $DR $d/photo.jpg --weights $d/negvar.pth -o x.png | | start image.*check its --weights

gallery                | 0 | $G $L --out g | g/index.html g/manifest.json g/blocks.0/0000.png g/blocks.0/0000.json g/blocks.0/0001.png g/blocks.0/0001.json |
gallery-out-file       | 2 | $G $L --out $d/text.jpg                  |  | is a file
gallery-out-empty      | 2 | $G $L --out ''                           |  | --out is empty
gallery-out-unwritable | 2 | $G $L --out /sys/g                       |  | cannot write
gallery-steps          | 2 | $G $L --steps 0                          |  |
gallery-batch          | 2 | $G $L --batch 0                          |  |
gallery-size           | 2 | $G $L --size 8                           |  |
gallery-lr             | 2 | $G $L --lr nan                           |  |
gallery-settle         | 2 | $G $L --settle 2                         |  |
gallery-channels       | 2 | $G --layer blocks.0 --channels bogus     |  |
gallery-channels-range | 2 | $G --layer blocks.0 --channels 0-99999   |  |
gallery-layer          | 2 | $G --layer bogus --channels 0            |  | unknown layer
gallery-classes        | 2 | $G --classes bogus                       |  |
gallery-model          | 2 | $G $L --model nonexistent                |  | unknown model
gallery-natural-missing | 2 | gallery --size 32 --steps 2 --quiet $L --natural $d/nope | |
gallery-natural-empty  | 2 | gallery --size 32 --steps 2 --quiet $L --natural $d/empty_dir | |

explain                | 0 | $X $d/photo.jpg --out e                  | * |
explain-out-file       | 2 | $X $d/photo.jpg --out $d/text.jpg        |  | is a file
explain-out-unwritable | 2 | $X $d/photo.jpg --out /sys/e             |  | cannot write
explain-out-empty      | 2 | $X $d/photo.jpg --out ''                 |  | --out is empty
explain-top            | 2 | $X $d/photo.jpg --top 0                  |  |
explain-steps          | 2 | $X $d/photo.jpg --steps nan              |  |
explain-target         | 2 | $X $d/photo.jpg --target bogus           |  | unknown class
explain-layer          | 2 | $X $d/photo.jpg --layer bogus            |  | unknown layer
explain-model          | 2 | $X $d/photo.jpg --model nonexistent      |  | unknown model

examples               | 0 | $E --images $d/photos --out x            | * | read 2 images
examples-bad-files     | 0 | $E --images $d/mixed_dir --out x         | * | read 1 images, skipped 3 unreadable
examples-all-bad       | 1 | $E --images $d/bad_dir --out x           |  | none of the 1 images
examples-bomb          | 1 | $E --images $d/bomb_dir --out x          |  | over the limit.*--max-pixels
examples-missing       | 2 | $E --images $d/nope --out x              |  | --images .*does not exist
examples-file          | 2 | $E --images $d/photo.jpg --out x         |  | not a folder
examples-empty         | 2 | $E --images $d/empty_dir --out x         |  | holds no images
examples-blank         | 2 | $E --images '' --out x                   |  | empty
examples-no-images     | 2 | examples --layer blocks.0 --out x        |  | --images
examples-channels      | 2 | $E --images $d/photos --channels 0-99999 --out x | | out of range
examples-channels-bogus | 2 | $E --images $d/photos --channels bogus --out x | | bad channel
examples-layer         | 2 | $E --images $d/photos --layer bogus --out x |  | unknown layer
examples-top           | 2 | $E --images $d/photos --top 0 --out x    |  | out of range
examples-quantiles     | 2 | $E --images $d/photos --quantiles nan --out x |  | out of range
examples-quantiles-1   | 2 | $E --images $d/photos --quantiles 1 --out x |  | out of range
examples-batch         | 2 | $E --images $d/photos --batch-size 0 --out x |  | out of range
examples-workers       | 2 | $E --images $d/photos --workers -1 --out x |  | out of range
examples-out-file      | 2 | $E --images $d/photos --out $d/text.jpg  |  | is a file
examples-out-empty     | 2 | $E --images $d/photos --out ''           |  | --out is empty
examples-out-unwritable | 2 | $E --images $d/photos --out /sys/x      |  | cannot write
examples-model         | 2 | $E --images $d/photos --model nonexistent --out x | | unknown model

spectrum               | 0 | spectrum $d/photos --size 16 -o s.npy    | s.npy |
spectrum-fit           | 0 | spectrum $d/photos --size 16 --fit -o s.npy | s.npy |
spectrum-o-txt         | 2 | spectrum $d/photos -o s.txt              |  | \.npy
spectrum-o-empty       | 2 | spectrum $d/photos -o ''                 |  | -o is empty
spectrum-o-folder      | 2 | spectrum $d/photos -o $d/photos          |  | is a folder
spectrum-o-unwritable  | 2 | spectrum $d/photos -o /sys/s.npy         |  | cannot write
spectrum-missing       | 2 | spectrum $d/nope -o s.npy                |  | not a folder
spectrum-file          | 2 | spectrum $d/photo.jpg -o s.npy           |  | not a folder
spectrum-empty         | 2 | spectrum $d/empty_dir -o s.npy           |  | no JPEG
spectrum-bad           | 2 | spectrum $d/bad_dir -o s.npy             |  | cannot read
spectrum-bomb          | 2 | spectrum $d/bomb_dir -o s.npy            |  | --max-pixels
spectrum-size-small    | 2 | spectrum $d/photos --size 15 -o s.npy    |  | out of range
spectrum-size-big      | 2 | spectrum $d/photos --size 1025 -o s.npy  |  | out of range
"""  # noqa: E501

#: numbers each flag must refuse at parse time (exit 2): out of range, NaN, inf, not numbers
REFUSED = {
    "$R": {
        "--steps": ["0", "-1", "1.5", "abc", "", "nan", "1000001", "$HUGE"],
        "--lr": ["0", "-1", "nan", "inf", "-inf", "1e-400", "abc"],
        "--size": ["0", "15", "8193", "10x", "x10", "32x32x32", "-32", "abc"],
        "--batch": ["0", "257", "nan"],
        "--settle": ["-0.1", "1.1", "nan"],
        "--seed": ["-1", str(2**62 + 1), "1e3"],
        "--l1": ["-1", "nan"],
        "--tv": ["inf"],
        "--blur": ["-0.5"],
        "--diversity": ["nan"],
        "--accentuate": ["0", "-1", "inf"],
        "--thresholds": ["0", "a,b", "", ",", "-5"],
        "--optimizer": ["bogus"],
        "--param": ["bogus"],
        "--transforms": ["bogus"],
        "--max-pixels": ["0", "-1", "nan"],
    },
    "$S $d/photo.jpg --method ig": {
        "--steps": ["0", "100001", "nan"],
        "--samples": ["0", "-5", "100001"],
        "--noise": ["-1", "nan", "11"],
        "--baseline": ["2", "-0.1", "nan", "inf", "bogus", ""],
        "--size": ["-1", "8193", "abc"],
        "--batch-size": ["0", "4097"],
        "--clip": ["0", "101", "nan"],
        "--alpha": ["1.5", "nan"],
        "--smooth": ["-1", "nan", "2"],
        "--dim": ["nan", "2"],
        "--sign": ["bogus"],
        "--max-pixels": ["0"],
    },
    "$DR $d/photo.jpg": {
        "--steps": ["0", "-1", "10001"],
        "--octaves": ["0", "21"],
        "--octave-scale": ["0.5", "nan", "5"],
        "--lr": ["0", "nan", "256"],
        "--jitter": ["-1", "1025"],
        "--tile": ["63", "8193"],
        "--lap-levels": ["0", "17"],
        "--frames": ["0", "-1", "10001", "nan"],
        "--zoom": ["0", "nan", "3", "-1"],
        "--rotate": ["nan", "inf", "181", "abc"],
        "--fps": ["0", "nan", "101"],
        "--seed": ["-1", "abc"],
        "--layer": ["blocks.10:nan", "blocks.10:inf", "blocks.10:abc", ":1"],
        "--max-pixels": ["0"],
    },
}

#: --from recipes whose values were edited: refused like the flags they stand for
EDITED_RECIPES = ["lr_nan", "steps_neg", "steps_float", "size_huge", "size_str", "optimizer",
                  "batch_huge", "decorrelate", "seed_neg", "settle_inf"]  # fmt: skip
DAMAGED_RECIPES = ["targets_str", "targets_bad", "targets_empty", "index", "frame", "model"]

BOMBS = ["bomb_real", "bomb_20k", "bomb_100k"]  # 9000 x 9000 decodable; two PNG headers
BAD_IMAGES = {  # name -> (file, what the line says)
    "missing": ("nope.jpg", "does not exist"),
    "folder": ("folder.jpg", "is a folder"),
    "empty": ("empty.png", "cannot read"),
    "text": ("text.jpg", "cannot read"),
    "truncated": ("truncated.jpg", "cannot read"),
    "fifo": ("fifo.jpg", "not a regular file"),
    "device": ("/dev/zero", "not a regular file"),
    **{name: (f"{name}.png", r"over the limit.*--max-pixels") for name in BOMBS},
}
GOOD_IMAGES = ["photo.jpg", "gray.png", "rgba.png", "sixteen.png", "palette.gif", "tiny.png"]
OOM = {
    "cuda": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 74.00 GiB"),
    "cpu": RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 74 GB"),
    "memoryerror": MemoryError(),
}
#: (id, command line, function made to raise, what it raises, exit code, what the line says)
RAISED = [
    *((f"render-oom-{k}", "$R -o x.png", "dreamviz.engine.render", e, 1, "out of memory.*--size")
      for k, e in OOM.items()),
    ("saliency-ig-oom", "$S $d/photo.jpg --method ig --steps 100000",
     "dreamviz.attribution.saliency", OOM["cpu"], 1, "out of memory.*--steps"),
    ("saliency-oom", "$S $d/photo.jpg", "dreamviz.attribution.saliency", OOM["cuda"], 1,
     "out of memory on the GPU.*--batch-size.*--size"),
    ("dream-oom", "$DR $d/photo.jpg -o x.png", "dreamviz.deepdream.dream", OOM["memoryerror"],
     1, "out of memory.*--tile"),
    ("render-interrupt-loading", "$R -o x.png", "dreamviz.models.load_model",
     KeyboardInterrupt(), 130, "^dreamviz: interrupted\n$"),
    ("render-unexpected-is-one-line", "$R -o x.png", "dreamviz.engine.render",
     ZeroDivisionError("boom"), 1, "unexpected ZeroDivisionError.*--debug"),
    ("render-disk-full", "$R -o x.png", "dreamviz.io.save_png",
     OSError(28, "No space left on device", "x.png"), 1, "x.png: No space left on device"),
]  # fmt: skip


def _words(text: str) -> list[str]:
    for key, value in SHORT.items():
        text = re.sub(re.escape(key) + r"(?![\w/])", value, text)
    return [WORDS.get(word, word) for word in shlex.split(text)]


def _cases() -> list[Case]:
    cases = []
    for line in TABLE.strip().splitlines():
        if line.strip():
            id, code, argv, files, err = (part.strip() for part in line.split("|", 4))
            expected = None if files == "*" else tuple(files.split())
            cases.append(Case(id, _words(argv), int(code), expected, err or None))
    for prefix, flags in REFUSED.items():
        head = next(w for w in _words(prefix) if not w.startswith("-"))
        for flag, values in flags.items():
            for v in values:
                argv = [*_words(prefix), flag, WORDS.get(v, v), "-o", "x.png"]
                cases.append(Case(f"{head}{flag}={v[:12]!r}", argv, 2))
    for name in EDITED_RECIPES + DAMAGED_RECIPES:
        why = "the recipe in .* damaged or was edited" if name in EDITED_RECIPES else None
        argv = _words(f"render --from $d/r_{name}.png -o x.png")
        cases.append(Case(f"render-from-{name}", argv, 2, (), why))
    for name, (file, why) in BAD_IMAGES.items():
        file = file if file.startswith("/") else f"$d/{file}"
        for id, line in [
            ("render-init", f"$R --init {file} -o x.png"),
            ("saliency-image", f"$S {file} -o x.png"),
            ("dream-image", f"$DR {file} -o x.png"),
            ("dream-guide", f"$DR $d/photo.jpg --guide {file} -o x.png"),
            ("explain-image", f"$X {file} --out e"),
        ]:
            cases.append(Case(f"{id}-{name}", _words(line), 2, (), why))
    for name in GOOD_IMAGES:
        argv = _words(f"$S $d/{name} -o x.png")
        cases.append(Case(f"saliency-{name}", argv, 0, ("x.png",)))
    for id, line, target, exc, code, err in RAISED:
        cases.append(Case(id, _words(line), code, (), err, (target, exc)))
    return cases


CASES = _cases()


# --------------------------------------------------------------------------- fixtures


def _header_bomb(path: Path, width: int, height: int) -> None:
    """A 1 x 1 PNG whose header claims ``width`` x ``height`` (the CRC fixed to match)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))


def _recipe_variants(d: Path) -> None:
    good = read_recipe(d / "good.png")
    image = Image.open(d / "good.png").convert("RGB")

    def variant(name: str, change) -> None:
        recipe = json_copy(good)
        change(recipe)
        save_png(d / f"r_{name}.png", image, recipe)

    s = "settings"
    variant("lr_nan", lambda r: r[s].update(lr=float("nan")))
    variant("steps_neg", lambda r: r[s].update(steps=-5))
    variant("steps_float", lambda r: r[s].update(steps=2.5))
    variant("size_huge", lambda r: r[s].update(size=[100000, 100000]))
    variant("size_str", lambda r: r[s].update(size="big"))
    variant("optimizer", lambda r: r[s].update(optimizer="bogus"))
    variant("batch_huge", lambda r: r[s].update(batch=10**9))
    variant("decorrelate", lambda r: r[s].update(decorrelate="yes"))
    variant("seed_neg", lambda r: r[s].update(seed=-3))
    variant("settle_inf", lambda r: r[s].update(settle=float("inf")))
    variant("targets_str", lambda r: r.update(targets="blocks.3:0"))
    variant("targets_bad", lambda r: r.update(targets=[["bogus", "x", "y"]]))
    variant("targets_empty", lambda r: r.update(targets=[]))
    variant("index", lambda r: r.update(index="abc"))
    variant("frame", lambda r: r.update(frame="x"))
    variant("model", lambda r: r.update(model="nonexistent"))
    variant("dream", lambda r: r.update(command="dream"))
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("dreamviz", "{not json")
    image.save(d / "r_json.png", pnginfo=info)


def json_copy(obj):
    import json

    return json.loads(json.dumps(obj))


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """An empty torch hub cache, and no network: a download attempt fails as offline would."""
    mp = pytest.MonkeyPatch()

    def no_network(url, *args, **kwargs):
        raise OSError(f"network is off in the tests ({url})")

    mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    mp.setattr(torch.hub, "download_url_to_file", no_network)
    mp.setattr("urllib.request.urlopen", no_network)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, offline, lite0) -> Path:
    """The hostile files, made once."""
    d = tmp_path_factory.mktemp("hostile")
    photo = Image.open(ASSETS / "chelsea.jpg").convert("RGB").resize((48, 40))
    photo.save(d / "photo.jpg")
    (d / "sub").mkdir()
    photo.save(d / "sub" / "photo.jpg")
    photo.convert("L").save(d / "gray.png")
    photo.convert("RGBA").save(d / "rgba.png")
    Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257).save(d / "sixteen.png")
    photo.convert("P").save(d / "palette.gif")
    photo.resize((4, 4)).save(d / "tiny.png")
    photo.resize((4000, 10)).save(d / "wide.png")  # the 10 x 4000 photo, lying down
    photo.resize((10, 4000)).save(d / "tall.png")
    Image.new("1", (9000, 9000)).save(d / "bomb_real.png")
    _header_bomb(d / "bomb_20k.png", 20000, 20000)
    _header_bomb(d / "bomb_100k.png", 100000, 100000)
    data = (d / "photo.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "text.jpg").write_text("not an image\n")
    (d / "folder.jpg").mkdir()
    os.mkfifo(d / "fifo.jpg")  # opening it for reading would wait for a writer forever
    for name, files in [("photos", ["photo.jpg", "gray.png"]), ("bad_dir", ["text.jpg"]),
                        ("bomb_dir", ["bomb_100k.png"]), ("empty_dir", []),
                        ("mixed_dir", ["photo.jpg", "empty.png", "text.jpg",
                                       "truncated.jpg"])]:  # fmt: skip
        (d / name).mkdir()
        for f in files:
            (d / name / f).write_bytes((d / f).read_bytes())

    state = {k: v.clone() for k, v in lite0.net.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    for name, value in [("nan", float("nan")), ("inf", float("inf"))]:
        broken = dict(state)
        broken[first] = state[first].clone().view(-1).index_fill(0, torch.tensor([0]), value)
        torch.save({k: v.view_as(state[k]) for k, v in broken.items()}, d / f"{name}.pth")
    negvar = dict(state)  # finite, but a negative variance makes the first forward NaN
    var = next(k for k in state if k.endswith("running_var"))
    negvar[var] = -torch.ones_like(state[var])
    torch.save(negvar, d / "negvar.pth")
    torch.save({"x": torch.zeros(2)}, d / "wrong.pth")
    (d / "code.pth").write_bytes(b"cos\nsystem\n(S'touch PWNED'\ntR.")  # runs if unpickled

    np.save(d / "good.npy", np.ones((3, 16, 9), np.float32))
    np.save(d / "nan.npy", np.full((3, 16, 9), np.nan, np.float32))
    np.save(d / "shape.npy", np.ones((2, 2), np.float32))
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)

    assert main(_words(f"$R -o {d / 'good.png'}")) == 0
    _recipe_variants(d)
    return d


@pytest.fixture(scope="module")
def quick_models(lite0):
    """The bundled model is loaded once for the whole table (weights files and other models
    are loaded for real: their checks are what the cases test)."""
    real = dreamviz.models.load_model

    def load(name="efficientnet_lite0", weights=None, device="auto"):
        if (
            name == "efficientnet_lite0"
            and weights in (None, "bundled")
            and device
            in (
                "auto",
                "cpu",
                None,
            )
        ):
            return lite0
        return real(name, weights=weights, device=device)

    mp = pytest.MonkeyPatch()
    mp.setattr(dreamviz.models, "load_model", load)
    yield
    mp.undo()


def _tree(folder: Path) -> set[str]:
    out = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            out.add((Path(root) / name).relative_to(folder).as_posix())
    return out


def _messages(err: str) -> list[str]:
    lines = re.split(r"[\r\n]+", err)
    return [line for line in lines if not PROGRESS.search(line)]


def _check(case: Case, rc, out: str, err: str, work: Path) -> None:
    assert "Traceback" not in err, err
    assert "terminate called" not in err, err
    if case.raises is None:
        assert "unexpected" not in err, err  # the catch-all of the CLI: a bug
    messages = _messages(err)
    assert len(messages) <= 1, f"{len(messages)} message lines:\n{err}"
    assert rc == case.code, f"exit {rc}, expected {case.code}; stderr: {err!r}"
    if case.err is not None:
        assert re.search(case.err, err, re.S), f"stderr {err!r} does not match {case.err!r}"
    written = {p for p in _tree(work) if not (work / p).is_dir()}
    folders = {p for p in _tree(work) if (work / p).is_dir()}
    if rc in (0, 130) or case.files:
        if case.files is not None:
            expected = set(case.files)
            assert written == expected, f"wrote {sorted(written)}, expected {sorted(expected)}"
        if case.argv[:1] not in (["models"], ["layers"], ["--version"], ["--help"]):
            for line in out.splitlines():  # the commands that write print each path
                assert Path(line).exists(), f"printed {line!r}, which does not exist"
    else:
        assert not written and not folders, f"left behind after a failure: {sorted(written)}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case, hostile, quick_models, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.replace(D, str(hostile)) for a in case.argv]
    if case.raises is not None:
        target, exc = case.raises

        def raiser(*args, **kwargs):
            raise exc

        monkeypatch.setattr(target, raiser)
    fixtures = {p: (hostile / p).stat().st_mtime_ns for p in _tree(hostile)}
    handler = signal.getsignal(signal.SIGINT)
    try:
        rc = main(argv)
    except SystemExit as e:  # --help and --version
        rc = e.code
    out, err = capsys.readouterr()
    _check(case, rc, out, err, work)
    assert {p: (hostile / p).stat().st_mtime_ns for p in _tree(hostile)} == fixtures
    assert signal.getsignal(signal.SIGINT) is handler


def test_the_table_is_large_and_covers_every_command():
    commands = {next((a for a in c.argv if not a.startswith("-")), "") for c in CASES}
    assert len(CASES) >= 200
    assert {"models", "layers", "render", "saliency", "dream", "gallery", "spectrum"} <= commands
    assert {"explain", "examples"} <= commands
    assert {0, 1, 2, 130} <= {c.code for c in CASES}
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


def test_help_states_every_numeric_range(capsys):
    """Every option whose value is a number says its range in --help."""
    from dreamviz.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    for name, command in sub.choices.items():
        for action in command._actions:
            if getattr(action.type, "range", None):
                assert "range " in (action.help or ""), (name, action.option_strings)
            elif action.type in (int, float):
                raise AssertionError(f"{name} {action.option_strings}: a number with no range")


def test_ctrl_c_during_start_up_in_process(monkeypatch, capsys):
    """SIGINT while main() starts (here: while it builds the parser) is remembered, then
    reported as one line and exit 130 once the command would start; the caller's handler is
    back afterwards."""
    import dreamviz.cli as cli

    real = cli.build_parser

    def interrupted():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return real()

    monkeypatch.setattr(cli, "build_parser", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    assert main(["models"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err == "dreamviz: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is handler


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["python", "-m", "dreamviz.cli", "render"], True),
        (["python", "-mdreamviz.cli"], True),
        (["python", "-X", "importtime", "-m", "dreamviz.cli"], True),
        (["/venv/bin/python", "/venv/bin/dreamviz", "render"], True),
        (["python", "-m", "pytest", "-m", "dreamviz.cli"], False),
        (["python", "-c", "import dreamviz"], False),
        (["python", "script.py", "dreamviz"], False),
        (["python"], False),
    ],
)
def test_the_package_knows_when_it_is_the_command(monkeypatch, argv, expected):
    import dreamviz

    monkeypatch.setattr(sys, "orig_argv", argv)
    assert dreamviz._command_line() is expected


# --------------------------------------------------------------------------- real processes


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env["TORCH_HOME"] = str(tmp_path / "torch_home")
    return env


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "dreamviz.cli", *args]


def test_a_real_process_renders_with_a_clean_stderr(tmp_path):
    """python -m dreamviz.cli as a user runs it: the image, its path, nothing on stderr (the
    in-process table covers the errors)."""
    p = subprocess.run(_cli(*_words("$R -o x.png")), cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout == "x.png\n"
    assert {f.name for f in tmp_path.iterdir() if f.name != "torch_home"} == {"x.png"}


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0])
def test_ctrl_c_during_start_up(tmp_path, delay):
    """SIGINT at any moment, start-up or the render, exits 130 with one line. The render is
    long (a million steps), so no machine is fast enough to finish before the signal."""
    argv = _cli(*_words("$R -o x.png"), "--steps", "1000000")
    p = subprocess.Popen(argv, cwd=tmp_path, env=_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    try:  # it stops at once: a Ctrl-C that was lost would leave it rendering for hours
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail(f"still running 120 s after Ctrl-C at {delay} s")
    assert p.returncode == 130, err
    assert err == "dreamviz: interrupted\n" or err.startswith("dreamviz: interrupted"), err
    assert "Traceback" not in err and "terminate" not in err and len(_messages(err)) == 1


def _interrupt_when(argv, marker: str, tmp_path: Path):
    """Run with stderr on a terminal (so the progress bar shows), send SIGINT once ``marker``
    (a regex) appears there; return (exit code, stdout, stderr)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a width
    p = subprocess.Popen(
        argv, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    seen, sent, deadline = b"", False, time.time() + 180
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        chunk = b""
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
        seen += chunk
        if not sent and re.search(marker, seen.decode(errors="replace")):
            p.send_signal(signal.SIGINT)
            sent = True
        if not chunk and p.poll() is not None:
            break
    if p.poll() is None:  # a lost Ctrl-C (or no marker): never leave a million steps running
        p.kill()
    out = p.stdout.read()
    p.wait(timeout=60)
    os.close(master)
    assert sent, f"never saw {marker!r}: {seen[-400:]!r}"
    return p.returncode, out, seen.decode(errors="replace")


def test_ctrl_c_during_a_render_saves_the_image(tmp_path):
    argv = _cli("render", "--size", "32", "--steps", "1000000", "--device", "cpu", "-o", "x.png")
    code, out, err = _interrupt_when(argv, r"render:.*\|\s*[1-9]\d*/1000000", tmp_path)
    assert code == 130, err
    assert "Traceback" not in err and "interrupted after" in err
    assert out.splitlines() == ["x.png"]
    assert "interrupted" in read_recipe(tmp_path / "x.png")["stopped"]


def test_ctrl_c_during_a_dream_saves_the_dream(tmp_path):
    photo = tmp_path / "in.jpg"
    Image.open(ASSETS / "chelsea.jpg").convert("RGB").resize((64, 48)).save(photo)
    argv = _cli("dream", str(photo), "--octaves", "1", "--steps", "10000", "--device", "cpu",
                "-o", "x.png")  # fmt: skip
    code, out, err = _interrupt_when(argv, r"dream:.*\|\s*[1-9]\d*/", tmp_path)
    assert code == 130, err
    assert "Traceback" not in err
    assert out.splitlines() == ["x.png"]
    assert read_recipe(tmp_path / "x.png")["interrupted"] is True
