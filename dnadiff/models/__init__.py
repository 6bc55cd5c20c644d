"""Backbones: Mamba, BiMamba, Caduceus-PH/PS language models, and the registry that builds them."""

from dnadiff.models.caduceus import BiMamba, RCPSWrapper, rc_hidden, rc_invariant_pool
from dnadiff.models.lm import DNALM
from dnadiff.models.mamba import Block, Mamba, RMSNorm, SelectiveSSM
from dnadiff.models.registry import available_models, build_model, load_model_config, model_from_config

__all__ = [
    "DNALM",
    "BiMamba",
    "Block",
    "Mamba",
    "RCPSWrapper",
    "RMSNorm",
    "SelectiveSSM",
    "available_models",
    "build_model",
    "load_model_config",
    "model_from_config",
    "rc_hidden",
    "rc_invariant_pool",
]
