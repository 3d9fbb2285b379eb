"""Rendering: the one ``render_batch`` function, the diffusers renderer, PNG output, the Celery task."""
