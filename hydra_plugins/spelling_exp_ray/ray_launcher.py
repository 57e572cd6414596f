"""``hydra/launcher=ray`` (conf/hydra/launcher/ray.yaml). Hydra accepts a launcher class only from the
``hydra_plugins`` namespace; everything it does is in spelling_exp/ray_launcher.py. Importing this
imports no ray (Hydra scans it at every start-up)."""
from spelling_exp import ray_launcher as _impl


class RayLauncher(_impl.RayLauncher):
    """Each sweep job as one Ray task: see spelling_exp.ray_launcher."""
