#!/usr/bin/env bash
# Run at vdmkit commit 10d2f1c (before the issue-14 restructuring) to make tests/data/legacy.
set -euo pipefail
V=/work/main/.venv/bin/vdmkit
C=/work/main/configs
rm -rf runs out; mkdir -p out
common="train.steps=2 train.batch_size=2 train.checkpoint_every=2 train.keep_checkpoints=1 train.sample_every=100 train.log_every=1 train.precision=fp32 train.warmup_steps=1 train.sample_steps=2 text.dim=8 text.layers=1 text.heads=2"
$V train $C/tiny.yaml $common model.channels=[8,8] model.head_dim=8 train.out_dir=runs/unet --no-progress
$V train $C/tiny_dit.yaml $common model.width=12 model.heads=2 model.position=rope model.cross_position=fourier train.out_dir=runs/dit --no-progress
$V train-vae $C/vae_frame.yaml model.block_out_channels=[8,8] model.norm_num_groups=4 model.latent_channels=4 data.size=16 data.frames=2 train.steps=2 train.batch_size=2 train.checkpoint_every=2 train.keep_checkpoints=1 train.eval_videos=2 train.precision=fp32 train.out_dir=runs/vae_frame --no-progress
$V train-vae $C/vae_video.yaml model.block_out_channels=[8,8] model.temporal_downsample=[true] model.norm_num_groups=4 model.latent_channels=4 data.size=16 data.frames=5 train.steps=2 train.batch_size=1 train.checkpoint_every=2 train.keep_checkpoints=1 train.eval_videos=2 train.precision=fp32 train.init_from=runs/vae_frame train.out_dir=runs/vae_video --no-progress
$V train $C/tiny.yaml $common model.channels=[8,8] model.head_dim=8 data.size=16 data.frames=4 latent.autoencoder=runs/vae_frame train.out_dir=runs/unet_latent --no-progress
$V train $C/tiny_dit.yaml $common model.width=12 model.heads=2 data.size=16 data.frames=5 latent.autoencoder=runs/vae_video train.out_dir=runs/dit_latent --no-progress
