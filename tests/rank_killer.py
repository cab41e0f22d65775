"""Run by torchrun in tests/test_distributed.py: ``vdmkit train`` whose rank KILL_RANK is killed (SIGKILL, as the
kernel's OOM killer or a lost node would) when it computes the loss of step KILL_STEP."""

import importlib
import os
import signal
import sys

from vdmkit import cli

if __name__ == "__main__":
    train_module = importlib.import_module("vdmkit.training.train")
    real, calls = train_module.diffusion_loss, []

    def dying(*args, **kwargs):
        calls.append(1)
        if os.environ["RANK"] == os.environ["KILL_RANK"] and len(calls) == int(os.environ["KILL_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    train_module.diffusion_loss = dying
    sys.exit(cli.main(sys.argv[1:]))
