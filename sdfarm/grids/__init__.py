"""Grids: a sweep's images as labelled X/Y pages (the pages, their layout and drawing, the
``index.html`` beside them, and writing both into the sweep folder)."""
