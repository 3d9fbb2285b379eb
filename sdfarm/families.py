"""Model families: the architectures sdfarm renders, and what each needs and allows.

Pure (standard library only): planning reads it to detect defaults and refuse parameters a
family does not use, the worker reads it to pick the pipeline class.
"""

from __future__ import annotations

#: Every family sdfarm renders, as ``family =`` and ``history --family`` spell them.
FAMILY_NAMES = ("sd1", "sd2", "sdxl", "flux-dev", "flux-schnell", "sd3")

#: Prediction types: what the denoiser predicts. ``flow`` is Flux's and SD3's flow matching.
PREDICTIONS = ("epsilon", "v", "flow")
