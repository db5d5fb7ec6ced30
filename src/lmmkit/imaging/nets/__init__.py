"""Networks (PyTorch + MONAI blocks): encoders, U-Nets, fusion, multi-task and DANN.

Importing this subpackage imports torch; ``import lmmkit`` and ``import lmmkit.imaging`` do not.
"""

from lmmkit.imaging.nets.dann import DANN, GradientReversal, grl_schedule
from lmmkit.imaging.nets.encoders import (
    AGGREGATIONS,
    AttentionPool,
    ConvEncoder,
    ImageClassifier,
    SliceEncoder2D,
)
from lmmkit.imaging.nets.fusion import FUSIONS, LateFusionNet, SurvivalFusionNet
from lmmkit.imaging.nets.multitask import TASKS, MultiTaskUNet, TaskBatchNorm, make_unet

__all__ = [
    "AGGREGATIONS",
    "AttentionPool",
    "ConvEncoder",
    "DANN",
    "FUSIONS",
    "GradientReversal",
    "ImageClassifier",
    "LateFusionNet",
    "MultiTaskUNet",
    "SliceEncoder2D",
    "SurvivalFusionNet",
    "TASKS",
    "TaskBatchNorm",
    "grl_schedule",
    "make_unet",
]
