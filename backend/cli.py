"""Command line: ``python -m backend reconstruct|reproject|mask|serve|weights|doctor``.

``reconstruct`` and ``reproject`` run the same ``backend.jobs.run_job`` and
``backend.reproject.job.run_reproject`` as the protocol server (``mask``: ``backend.jobs.run_mask``,
only the object mask), with a tqdm bar per stage on stderr and a one-line summary on stdout.
Failures print ``error: ...`` and ``hint: ...`` on stderr and exit with status 1 (2 for bad
arguments, 130 when interrupted).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from backend.categories import SCALE_MODES
from backend.devices import configure_threads
from backend.doctor import run_doctor
from backend.jobs import JobOutcome, describe_error, log_traceback, run_job, run_mask
from backend.methods import METHOD_MODULES, options_class
from backend.methods.base import JobCancelled
from backend.models import import_official
from backend.options import FACES_RANGE, JOB_DEFAULTS, describe_options
from backend.protocol import (
    DEVICES,
    MASK_SOURCES,
    PRESETS,
    REPROJECT_SIZES,
    JobRequest,
    MaskRequest,
    ReprojectRequest,
    UserError,
    parse_overrides,
)
from backend.reproject.job import run_reproject
from backend.server import serve
from backend.weights import Registry


class StageBars:
    """One tqdm bar per progress stage, on stderr."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.stage = ""

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "progress":
            return
        if event["stage"] != self.stage or self.bar is None:
            self.close()
            self.stage = event["stage"]
            self.bar = tqdm(
                total=event["total"], desc=self.stage, file=sys.stderr, leave=True, dynamic_ncols=True
            )
        self.bar.n = event["step"]
        if event.get("loss") is not None:
            self.bar.set_postfix(loss=f"{event['loss']:.4g}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def fail(code: str, message: str, hint: str = "") -> int:
    print(f"error: {message} [{code}]", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return 1


def placement_overrides(args: argparse.Namespace) -> dict[str, str]:
    """``--scale``, ``--size-m``, ``--faces`` and ``--quads`` as the job options they stand for (every
    method has them: ``backend/categories.py`` places the mesh, ``faces`` sets its density, ``quads``
    adds its polygons)."""
    quads = "true" if args.quads else None  # a --set value, typed by the option's bool
    chosen = {"scale": args.scale, "size_m": args.size_m, "faces": args.faces, "quads": quads}
    return {key: str(value) for key, value in chosen.items() if value is not None}


def cmd_reconstruct(args: argparse.Namespace) -> int:
    try:
        request = JobRequest(
            image=args.image,
            output_dir=args.output,
            method=args.method,
            weights=args.weights,
            preset=args.preset,
            device=args.device,
            seed=args.seed,
            mask=args.mask,
            mask_path=args.mask_path,
            box=args.box,
            overrides={**parse_overrides(args.set), **placement_overrides(args)},
            overwrite=args.overwrite,
            preview=False,
            id="cli",
        )
    except ValueError as exc:
        return fail("bad_argument", str(exc), "see --help")
    outcome = _run_with_bars(lambda bars: run_job(request, bars, registry=_registry(args)))
    if isinstance(outcome, int):
        return outcome
    s = outcome.summary
    print(
        f"wrote {s['output_dir']}: {s['vertices']} vertices, {s['faces']} faces "
        f"({s['method']}, weights {s['weights']}, preset {s['preset']}, {s['device']}, {s['seconds']:.1f} s)"
    )
    return 0


def cmd_reproject(args: argparse.Namespace) -> int:
    request = ReprojectRequest(
        result_dir=args.result, mesh=args.mesh, output_dir=args.output, texture=args.texture,
        size=args.size, device=args.device, overwrite=args.overwrite, id="cli",
    )  # fmt: skip
    return run_request(request, run_reproject, lambda s: (
        f"wrote {s['output_dir']}: {s['vertices']} vertices, {s['faces']} faces, "
        f"{100 * s['seen_fraction']:.1f} % of the texture from the photo ({s['seconds']:.1f} s)"
    ))  # fmt: skip


def cmd_mask(args: argparse.Namespace) -> int:
    request = MaskRequest(
        image=args.image, output_dir=args.output, mask=args.mask, mask_path=args.mask_path, box=args.box,
        overwrite=args.overwrite, id="cli",
    )  # fmt: skip
    return run_request(request, run_mask, lambda s: (
        f"wrote {s['output_dir']}: {s['mask_source']} mask, {100 * s['coverage']:.1f} % of the "
        f"{s['width']}x{s['height']} photo ({s['seconds']:.1f} s)"
    ))  # fmt: skip


def run_request(request: Any, runner: Callable[..., Any], describe: Callable[[dict[str, Any]], str]) -> int:
    """Validate ``request``, run it with progress bars on stderr and print ``describe(summary)``: the
    command line of the job types that need no method options (re-projection, mask preview)."""
    try:
        request.validate()
    except ValueError as exc:
        return fail("bad_argument", str(exc), "see --help")
    outcome = _run_with_bars(lambda bars: runner(request, bars))
    if isinstance(outcome, int):
        return outcome
    print(describe(outcome.summary))
    return 0


def _run_with_bars(job: Callable[[StageBars], JobOutcome]) -> JobOutcome | int:
    """Run ``job`` with progress bars; its outcome, or the exit status of a failure or a cancel."""
    bars = StageBars()
    try:
        outcome = job(bars)
    except (KeyboardInterrupt, JobCancelled):
        bars.close()
        print("cancelled", file=sys.stderr)
        return 130
    except Exception as exc:
        bars.close()
        log_traceback(exc)
        return fail(*describe_error(exc))
    bars.close()
    return outcome


def _registry(args: argparse.Namespace) -> Registry:
    return Registry(args.weights_dir)


def cmd_weights(args: argparse.Namespace) -> int:
    registry = _registry(args)
    try:
        if args.action == "list":
            entries = registry.entries()
            print(f"{'id':32} {'method':14} {'category':10} {'origin':8} {'MB':>8}  file")
            for e in entries:
                state = "" if e.path.is_file() else "  (missing)"
                print(
                    f"{e.id:32} {e.method:14} {e.category:10} {e.origin:8} {e.size / 1e6:8.1f}  "
                    f"{e.path}{state}"
                )
            if not entries:
                print(f"no weights registered (user dir {registry.user_dir})")
            return 0
        if args.action == "import":
            entry = import_official(registry, args.file, args.method, args.category, args.id)
            print(f"imported {entry.id}: {entry.path} (sha256 {entry.sha256})")
            return 0
        failures = 0
        entries = [registry.find(args.id)] if args.id else registry.entries()
        for entry in entries:
            try:
                registry.verify(entry)
                print(f"ok    {entry.id}")
            except UserError as exc:
                failures += 1
                print(f"FAIL  {entry.id}: {exc.message} ({exc.hint})")
        return 1 if failures else 0
    except UserError as exc:
        return fail(exc.code, exc.message, exc.hint)


def cmd_options(args: argparse.Namespace) -> int:
    """Print every option of the chosen methods, as the methods' ``Options`` declare them."""
    presets = [args.preset] if args.preset else list(PRESETS)
    for method in [args.method] if args.method else list(METHOD_MODULES):
        print(f"{method} (--set KEY=VALUE; preset values: {', '.join(presets)})")
        for item in describe_options(options_class(method)):
            values = " / ".join(json.dumps(item["presets"][p]) for p in presets)
            allowed = f" [{', '.join(item['choices'])}]" if "choices" in item else ""
            print(f"  {item['name']} ({item['type']}): {values}{allowed}\n      {item['doc']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(args.weights_dir)


def cmd_doctor(args: argparse.Namespace) -> int:
    return run_doctor(_registry(args))


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``-o OUTDIR`` and ``--overwrite``, the same for every job type."""
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier result in OUTDIR (never other files)"
    )


def build_parser() -> argparse.ArgumentParser:
    weights_dir_help = (
        "user weights folder (default: $RFI_WEIGHTS_DIR or ~/.local/share/reconstruct-from-image)"
    )
    parser = argparse.ArgumentParser(prog="python -m backend", description="Reconstruct from Image backend")
    parser.add_argument("--weights-dir", help=weights_dir_help)
    common = argparse.ArgumentParser(add_help=False)  # so --weights-dir also works after the command
    common.add_argument("--weights-dir", default=argparse.SUPPRESS, help=weights_dir_help)
    sub = parser.add_subparsers(dest="command", required=True)

    rec = sub.add_parser("reconstruct", parents=[common], help="photo -> textured mesh in OUTDIR")
    rec.add_argument("image")
    rec.add_argument(
        "--mask",
        choices=MASK_SOURCES,
        default=JOB_DEFAULTS["mask"],
        help="object mask source (default auto: the alpha channel, else the salient-object net)",
    )
    rec.add_argument("--mask-path", help="mask image for --mask file")
    rec.add_argument(
        "--box",
        nargs=4,
        type=int,
        metavar=("X0", "Y0", "X1", "Y1"),
        help="box around the object: seeds GrabCut, picks the salient net's object",
    )
    rec.add_argument("--method", choices=tuple(METHOD_MODULES), default=JOB_DEFAULTS["method"])
    rec.add_argument("--weights", help="weights id (default: the method's first registered weights)")
    rec.add_argument("--preset", choices=PRESETS, default=JOB_DEFAULTS["preset"])
    rec.add_argument("--device", choices=DEVICES, default=JOB_DEFAULTS["device"])
    rec.add_argument("--seed", type=int, default=JOB_DEFAULTS["seed"])
    rec.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a preset option (`python -m backend options` lists them)",
    )  # fmt: skip
    rec.add_argument(
        "--scale",
        choices=SCALE_MODES,
        help="metres (default): the category's typical size, origin at the bottom centre on the ground; "
        "unit: centred, largest extent 1",
    )
    rec.add_argument("--size-m", type=float, metavar="METRES", help="size instead of the typical one")
    low, high = FACES_RANGE
    rec.add_argument(
        "--faces", type=int, metavar="N",
        help=f"about N triangles in the exported mesh, {low}-{high} (default: the method's own mesh)",
    )  # fmt: skip
    rec.add_argument(
        "--quads", action="store_true",
        help="also write the mesh's quads as polygons (mesh.npz; the add-on imports them); "
        "--faces still counts triangles",
    )  # fmt: skip
    add_output_arguments(rec)
    rec.set_defaults(func=cmd_reconstruct)

    rep = sub.add_parser(
        "reproject", parents=[common], help="bake a result's photo onto an edited mesh -> OUTDIR"
    )
    rep.add_argument("result", help="the result folder of the reconstruction (its -o)")
    rep.add_argument("--mesh", required=True, help="edited mesh: .glb, .gltf, .obj or a result's mesh.npz")
    rep.add_argument(
        "--texture", help="the texture its UVs address now (default: the mesh file's, else the result's)"
    )
    low, high = REPROJECT_SIZES
    rep.add_argument("--size", type=int, help=f"texture side, {low}-{high} (default: the texture's)")
    rep.add_argument("--device", choices=DEVICES, default="auto")
    add_output_arguments(rep)
    rep.set_defaults(func=cmd_reproject)

    msk = sub.add_parser(
        "mask", parents=[common], help="only the object mask a reconstruction would use -> OUTDIR/mask.png"
    )
    msk.add_argument("image")
    msk.add_argument("--mask", choices=MASK_SOURCES, default=JOB_DEFAULTS["mask"], help="as for reconstruct")
    msk.add_argument("--mask-path", help="mask image for --mask file")
    msk.add_argument("--box", nargs=4, type=int, metavar=("X0", "Y0", "X1", "Y1"), help="as for reconstruct")
    add_output_arguments(msk)
    msk.set_defaults(func=cmd_mask)

    weights = sub.add_parser("weights", help="list, import or verify weights")
    actions = weights.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="registered weights")
    imp = actions.add_parser(
        "import", parents=[common], help="convert an official .pth/.pt checkpoint to safetensors"
    )
    imp.add_argument("file")
    imp.add_argument("--method", required=True, choices=sorted(METHOD_MODULES))
    imp.add_argument("--category", required=True,
                     help="e.g. car, bird, face (dataset names such as cub or p3d are recorded as the "
                     "category they are)")
    imp.add_argument("--id", help="weights id (default METHOD-CATEGORY-<sha prefix>)")
    ver = actions.add_parser("verify", parents=[common], help="check size and sha256 of one or all weights")
    ver.add_argument("id", nargs="?")
    weights.set_defaults(func=cmd_weights)

    opt = sub.add_parser("options", help="each method option: type, preset values, doc")
    opt.add_argument("--method", choices=tuple(METHOD_MODULES), help="one method (default: all)")
    opt.add_argument("--preset", choices=PRESETS, help="one preset's values (default: all)")
    opt.set_defaults(func=cmd_options)

    sub.add_parser("serve", parents=[common], help="JSON-lines protocol server on stdin/stdout").set_defaults(
        func=cmd_serve
    )
    sub.add_parser("doctor", parents=[common], help="environment report").set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configure_threads()
    except UserError as exc:
        print(f"error: {exc.message} ({exc.hint})", file=sys.stderr)
        return 2
    return args.func(args)
