"""Sampling: pure sampler functions, timestep spacings, classifier-free guidance, generate()."""

from vdmkit.sampling.guidance import check_guidance, guided
from vdmkit.sampling.samplers import (
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
    sample_lcm,
    sample_unipc,
)
from vdmkit.sampling.timesteps import SPACINGS, make_timesteps

__all__ = ["SPACINGS", "check_guidance", "guided", "make_timesteps", "sample_ddim", "sample_ddpm",
           "sample_dpmpp_2m", "sample_euler", "sample_heun", "sample_lcm", "sample_unipc"]
