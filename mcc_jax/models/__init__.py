"""Pure Flax NNX modules of MCC."""
from mcc_jax.models.discriminator import VQGANDiscriminator
from mcc_jax.models.generator import AppMotionCompFormer
from mcc_jax.models.mcc import MCC
from mcc_jax.models.motion_estimator import MotionEstimator
