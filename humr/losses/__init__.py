"""humr.losses: pure tensor losses (MMD, person mask, pose). Imports nothing else of humr."""

from humr.losses import mask, mmd, pose
from humr.losses.mask import *  # noqa: F403 - the names of mask.__all__
from humr.losses.mmd import *  # noqa: F403
from humr.losses.pose import *  # noqa: F403

# The public names are the submodules' own lists, written once there.
__all__ = [*mmd.__all__, *mask.__all__, *pose.__all__]
