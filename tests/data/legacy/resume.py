# Resume the legacy unet and dit runs to step 4 on one thread (as the test suite runs), record the losses.
import json, shutil, torch
from vdmkit.config import load_config
from vdmkit.training import train
torch.set_num_threads(1)
exp = {}
for name in ["unet", "dit"]:
    shutil.rmtree(f"resumed/{name}", ignore_errors=True)
    shutil.copytree(f"runs/{name}", f"resumed/{name}")
    train(load_config(f"resumed/{name}/config.yaml", [f"train.out_dir=resumed/{name}", "train.steps=4"]), resume=True, progress=False)
    rows = [json.loads(l) for l in open(f"resumed/{name}/metrics.jsonl")]
    exp[name] = [{"step": r["step"], "loss": r["loss"], "grad_norm": r["grad_norm"]} for r in rows if r["step"] > 2]
json.dump(exp, open("resume_expected.json", "w"), indent=1)
print(exp)
