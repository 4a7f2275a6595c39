"""HTTP routes: ``system`` (health, metrics, workers), ``envs``, ``sandboxes``, ``compat`` (ROCK's paths)."""
