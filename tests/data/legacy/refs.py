# Reference outputs of the legacy checkpoints, computed at vdmkit commit 10d2f1c.
import json, shutil, subprocess, torch
torch.set_num_threads(1)  # as the test suite runs
from safetensors.torch import save_file
from vdmkit.pipelines.text2video import TextToVideo
from vdmkit.autoencoders.load import load_autoencoder

PROMPTS = ["a slow red circle moving right", "a fast blue square moving up"]
CASES = {
    "ddim_g3": dict(sampler="ddim", steps=3, guidance=3.0, seed=1),
    "dpmpp_g2_neg": dict(sampler="dpmpp_2m", steps=3, guidance=2.0, seed=5, negative_prompt="a green triangle"),
    "ddpm_g1": dict(sampler="ddpm", steps=3, guidance=1.0, seed=7),
    "ddim_bf16": dict(sampler="ddim", steps=2, guidance=3.0, seed=2, precision="bf16"),
}
out = {}
for name in ["unet", "dit", "unet_latent", "dit_latent"]:
    pipe = TextToVideo.from_pretrained(f"runs/{name}")
    for case, kw in CASES.items():
        out[f"{name}.{case}"] = pipe(PROMPTS, **kw).contiguous()
g = torch.Generator().manual_seed(3)
for name in ["vae_frame", "vae_video"]:
    vae = load_autoencoder(f"runs/{name}")
    frames = 2 if name == "vae_frame" else 5
    x = torch.rand(1, 3, frames, 16, 16, generator=g) * 2 - 1
    out[f"{name}.input"] = x
    with torch.no_grad():
        out[f"{name}.latents"] = vae.encode_latents(x).contiguous()
        out[f"{name}.decoded"] = vae.decode_latents(out[f"{name}.latents"]).contiguous()
save_file(out, "references.safetensors")
print({k: tuple(v.shape) for k, v in out.items()})
