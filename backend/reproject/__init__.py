"""Re-project a result's photo onto a mesh the artist edited (``python -m backend reproject``).

The photo, its object mask and the camera that took it are the result's (``result.json``); the
mesh is the artist's, any topology, in the same (Blender) frame. ``camera`` turns the Blender
camera of the result into the renderer's, ``meshfile`` reads the edited mesh, ``unwrap`` gives a
mesh without UVs a simple atlas, ``texture`` composites the bake with what the photo does not see,
and ``job`` runs it all as a job of the protocol server and the CLI.
"""
