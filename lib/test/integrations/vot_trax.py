"""Our tracker as a TraX server, the process the VOT toolkit (https://github.com/votchallenge/toolkit, protocol
`trax`) starts for a tracker that tracking/vot_setup.py registered in a workspace's trackers.ini:

    python -m lib.test.integrations.vot_trax --script lorat --config base_224 --checkpoint C [--engine E]

The model is built once per process (explicitly, `resolve_spec` -> `build_tracker`); every `initialize` request
starts tracking anew (the toolkit re-initialises after failures and between sequences) and every `frame` request
answers one rectangle (`x, y, w, h`, 0-based pixels) with the confidence as the `confidence` property. Only
bounding-box regions and image paths are offered; the toolkit converts other region formats to rectangles.
The TraX messages travel over this process's stdin/stdout, so nothing else may print to stdout.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from lib.test.tracker import add_tracker_arguments, build_tracker, spec_from_args
from lib.utils.image import read_image


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="lorat")
    parser.add_argument("--config", required=True)
    add_tracker_arguments(parser, checkpoint_required=True)
    return parser


def serve(args: argparse.Namespace) -> None:
    import trax  # the TraX server side (PyPI vot-trax), needed only here

    spec = spec_from_args(args)
    tracker = build_tracker(spec)
    with trax.Server([trax.Region.RECTANGLE], [trax.Image.PATH], ["color"],
                     tracker_name=f"{spec.script}_{spec.config}", tracker_family="LoRAT") as server:
        while True:
            request = server.wait()
            if request.type == trax.TraxStatus.QUIT:
                return
            image = read_image(request.image["color"].path())
            if request.type == trax.TraxStatus.INITIALIZE:
                region, _properties = request.objects[0]
                box = np.asarray(region.bounds(), dtype=np.float64)
                tracker.initialize(image, box)
                confidence = 1.0
            else:
                box, confidence = tracker.track(image)
            server.status([(trax.Rectangle.create(*(float(v) for v in box)), {"confidence": f"{confidence:.6f}"})])


def main(argv: list[str] | None = None) -> int:
    stdout, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the TraX stream on stdout
    try:
        serve(build_parser().parse_args(argv))
    finally:
        sys.stdout = stdout
    return 0


if __name__ == "__main__":
    sys.exit(main())
