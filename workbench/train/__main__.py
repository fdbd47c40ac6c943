"""``python -m workbench.train <subcommand> ...``: one line per training tool in ``SUBCOMMANDS``.

Each entry names a module and its ``main(argv)``; modules are imported only when chosen, so one
tool's dependencies never slow down or break another.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "meshinversion": ("workbench.train.meshinversion_gan", "main", "train the MeshInversion demo generator"),
    "meshinversion-samples": ("workbench.train.meshinversion_gan", "main_samples", "demo generator samples"),
    "meshinversion-encoder": (
        "workbench.train.meshinversion_encoder", "main", "train MeshInversion's z + camera start encoder"
    ),
    "make-eval": ("workbench.eval_set", "main", "regenerate the committed held-out eval set"),
    "make-examples": ("workbench.eval_set", "main_examples", "regenerate the demo images in examples/"),
    "gan2shape-renders": ("workbench.data.gan2shape_renders", "main", "render cars for GAN2Shape's models"),
    "stylegan2": ("workbench.train.stylegan2_training", "main", "train the GAN2Shape demo StyleGAN2"),
    "stylegan2-export": (
        "workbench.train.stylegan2_training", "main_export", "export the demo StyleGAN2 to weights/"
    ),
    "gan2shape-encoder": ("workbench.train.gan2shape_encoder", "main", "pretrain GAN2Shape's latent encoder"),
    "gan2shape-joint": ("workbench.train.gan2shape_joint", "main", "joint-pretrain GAN2Shape's five nets"),
    "masknet": ("workbench.train.masknet_training", "main", "train the GAN2Shape demo mask network"),
}


def usage() -> str:
    lines = ["usage: python -m workbench.train <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:<20} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in SUBCOMMANDS:
        print(f"unknown subcommand {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, function, _ = SUBCOMMANDS[argv[0]]
    getattr(importlib.import_module(module), function)(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
