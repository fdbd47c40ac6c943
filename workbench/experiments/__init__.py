"""Research ideas kept runnable but out of the shipped runtime (no method uses them)."""
