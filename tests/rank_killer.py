"""Run by torchrun in tests/test_distributed.py: ``vdmkit train`` whose rank FAULT_RANK fails when it computes the
loss of step FAULT_STEP: FAULT=kill (SIGKILL, as the kernel's OOM killer or a lost node would) or FAULT=hang (it
stops answering, as a stuck data read or a deadlock would)."""

import importlib
import os
import signal
import sys
import time

from vdmkit import cli

if __name__ == "__main__":
    train_module = importlib.import_module("vdmkit.training.train")
    real, calls = train_module.diffusion_loss, []

    def failing(*args, **kwargs):
        calls.append(1)
        if os.environ["RANK"] == os.environ["FAULT_RANK"] and len(calls) == int(os.environ["FAULT_STEP"]):
            if os.environ["FAULT"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)
        return real(*args, **kwargs)

    train_module.diffusion_loss = failing
    sys.exit(cli.main(sys.argv[1:]))
