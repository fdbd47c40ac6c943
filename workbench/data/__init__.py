"""The procedural car category: seeded shape and paint parameters, a star-shaped signed-distance car,
its ground truth in MeshInversion's template parametrisation, and renders with view, light and clutter."""
