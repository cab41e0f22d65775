"""Feature-extractor loaders on files with the reference formats and signatures, made here with random
weights, with the network disabled (METRICS_REFERENCE.md §5, §7.1 items 10-11)."""

import json
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vdmkit.errors import (
    CheckpointMismatchError,
    ConfigError,
    ConstraintError,
    CorruptCheckpointError,
    InvalidVideoError,
    UnsafeFormatError,
    VocabularyWarning,
)
from vdmkit.evaluation import (
    accumulate_moments,
    clipsim,
    gaussian_stats,
    inception_score,
    moments,
)
from vdmkit.evaluation.features import (
    CLIP_MEAN,
    CLIP_STD,
    I3D_TORCHSCRIPT,
    PT_INCEPTION,
    FIDInceptionV3,
    check_clip_pair,
    clip_frame_embeddings,
    clip_input,
    clip_text_embeddings,
    i3d_features,
    i3d_input,
    inception_features,
    inception_input,
    iter_i3d_features,
    load_clip,
    load_fid_inception,
    load_i3d,
)
from vdmkit.io.checkpoint import sha256_file

# the reference I3D is a TorchScript file: torch 2.13 deprecates making one, which these tests must do
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""
    def refuse(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def video(b, t, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


# ---- I3D ------------------------------------------------------------------------------------------

class I3DStandIn(nn.Module):
    """StyleGAN-V I3D TorchScript signature; columns 0-2 of the output probe what the network saw."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, stride=(1, 4, 4))
        self.fc = nn.Linear(8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise RuntimeError("the I3D TorchScript is fed uint8 videos")
        v = x.float()
        if rescale:
            v = v / 255.0 * 2.0 - 1.0
        if resize:
            v = F.interpolate(v, size=[v.shape[2], 224, 224], mode="trilinear", align_corners=False)
        out = self.fc(self.conv(v).mean(dim=[2, 3, 4]))
        probes = torch.stack([v.mean(dim=[1, 2, 3, 4]), torch.full_like(out[:, 0], float(v.shape[3])),
                              torch.full_like(out[:, 0], float(v.shape[2]))], 1)
        out = torch.cat([probes, out[:, 3:]], 1)
        return out if return_features else out.softmax(-1)


class WrongSignature(nn.Module):
    def forward(self, x: torch.Tensor, scale: bool = False) -> torch.Tensor:
        return x.float().mean(dim=[1, 2, 3, 4])


def save_script(module, path):
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(module), str(path))
    return sha256_file(path)


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / I3D_TORCHSCRIPT.filename
    torch.manual_seed(0)
    return path, save_script(I3DStandIn(), path)


def test_i3d_loader_checks_the_hash_and_feeds_uint8_bcthw_to_the_torchscript(i3d_file):
    path, sha = i3d_file
    extractor = load_i3d(path.parent, expected_sha256=sha)
    assert extractor.record.sha256 == sha and extractor.record.bytes == path.stat().st_size
    assert not extractor.record.matches_published and extractor.preprocessing["min_frames"] == 10
    v = video(3, 16, 32, 40)
    feats = i3d_features(extractor, v, batch_size=2, progress=False)
    assert feats.shape == (3, 400) and feats.dtype == np.float64
    seen = ((v + 1) * 127.5).round() / 255 * 2 - 1  # rounding quantisation, then the TorchScript's rescale
    seen = F.interpolate(seen, size=[16, 224, 224], mode="trilinear", align_corners=False)
    assert np.abs(feats[:, 0] - seen.mean(dim=(1, 2, 3, 4)).double().numpy()).max() < 1e-6
    assert (feats[:, 1] == 224).all() and (feats[:, 2] == 16).all()  # resized to 224, frames kept
    direct = extractor.module(i3d_input(v), rescale=True, resize=True, return_features=True).double().numpy()
    assert np.abs(feats - direct).max() <= 1e-5 * np.abs(direct).max()  # batch of 2 vs 3: float32 kernels


def test_i3d_quantisation_rounds_at_half_grey_levels():
    k = torch.arange(0, 255, 17, dtype=torch.float64)
    below, above = (k + 0.5 - 1e-4) / 127.5 - 1, (k + 0.5 + 1e-4) / 127.5 - 1
    clip = lambda x: x.float().view(1, 1, 1, 1, -1).expand(1, 3, 10, 2, -1)
    assert torch.equal(i3d_input(clip(below))[0, 0, 0, 0].long(), k.long())
    assert torch.equal(i3d_input(clip(above))[0, 0, 0, 0].long(), k.long() + 1)


def test_i3d_streamed_statistics_equal_one_shot(i3d_file):
    path, sha = i3d_file
    extractor = load_i3d(path, expected_sha256=sha)
    v = video(6, 10, 24, 24, seed=1)
    batches = iter_i3d_features(extractor, v.split(2), progress=False)
    streamed = gaussian_stats(accumulate_moments(batches, chunk_rows=1))
    whole = gaussian_stats(moments(i3d_features(extractor, v, batch_size=2, progress=False)))
    assert np.abs(streamed[0] - whole[0]).max() <= 1e-12 and np.abs(streamed[1] - whole[1]).max() <= 1e-12


def test_i3d_bad_files_and_inputs(i3d_file, tmp_path):
    path, sha = i3d_file
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_i3d(path, expected_sha256="0" * 64)
    with pytest.raises(CorruptCheckpointError, match=r"51235320"):  # the published size, before hashing
        load_i3d(path)
    with pytest.raises(CorruptCheckpointError) as missing:
        load_i3d(tmp_path)
    assert I3D_TORCHSCRIPT.filename in str(missing.value) and I3D_TORCHSCRIPT.url in str(missing.value)
    assert str(tmp_path) in str(missing.value)
    wrong = tmp_path / "wrong.pt"
    with pytest.raises(ConfigError, match="signature"):
        load_i3d(wrong, expected_sha256=save_script(WrongSignature(), wrong))
    html = tmp_path / "page.pt"
    html.write_bytes(b"<html>quota exceeded</html>")
    with pytest.raises(CorruptCheckpointError, match="not a TorchScript"):
        load_i3d(html, expected_sha256=sha256_file(html))
    extractor = load_i3d(path, expected_sha256=sha)
    with pytest.raises(ConstraintError, match="at least 10 frames"):
        i3d_features(extractor, video(2, 9, 32, 32), progress=False)
    with pytest.raises(InvalidVideoError, match="3 channels"):
        i3d_features(extractor, video(2, 16, 32, 32)[:, :1], progress=False)
    with pytest.warns(UserWarning, match="sha256 check skipped"):
        assert load_i3d(path, expected_sha256=None).record.expected_sha256 is None


def test_real_and_fake_clips_must_share_frames_and_size():
    real = video(2, 16, 32, 32)
    check_clip_pair(real, video(5, 16, 32, 32))  # batch sizes may differ
    with pytest.raises(ConstraintError, match="same frame count"):
        check_clip_pair(real, video(2, 14, 32, 32))
    with pytest.raises(ConstraintError, match="same frame count"):
        check_clip_pair(real, video(2, 16, 64, 64))


# ---- Inception (FID) ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    torch.manual_seed(0)
    model = FIDInceptionV3()
    with torch.no_grad():  # non-trivial batch-norm statistics so a wrong eps or order would show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / PT_INCEPTION.filename
    torch.save(model.state_dict(), path)
    return path, sha256_file(path), model.eval()


def test_inception_architecture_has_the_published_file_size(inception_file):
    """pytorch-fid's file is 95,628,359 bytes; our parameters must account for all but the pickle
    overhead (a missing or extra block would be off by megabytes)."""
    _, _, model = inception_file
    tensor_bytes = sum(v.numel() * v.element_size() for k, v in model.state_dict().items()
                       if not k.endswith("num_batches_tracked"))
    assert 0 < PT_INCEPTION.size - tensor_bytes < 200_000


def test_inception_loader_and_pytorch_fid_preprocessing(inception_file):
    path, sha, model = inception_file
    extractor = load_fid_inception(path.parent, expected_sha256=sha)
    assert extractor.record.sha256 == sha and extractor.dim == 2048
    v = video(1, 2, 40, 48, seed=3)
    frames01 = (v[0].permute(1, 0, 2, 3) + 1) / 2  # (T, 3, H, W) in [0, 1]
    expected_input = 2 * F.interpolate(frames01, size=(299, 299), mode="bilinear", align_corners=False) - 1
    assert torch.equal(inception_input(v[0].permute(1, 0, 2, 3)), expected_input)
    feats = inception_features(extractor, v, progress=False)
    with torch.no_grad():
        direct = model(expected_input).double().numpy()
    assert feats.shape == (2, 2048) and np.abs(feats - direct).max() <= 1e-5 * np.abs(direct).max()
    logits = extractor.module.logits_unbiased(torch.from_numpy(feats).float())
    assert logits.shape == (2, 1008) and np.isfinite(inception_score(logits.numpy(), splits=2)[0])


def test_inception_loader_refuses_mismatched_or_unsafe_files(inception_file, tmp_path):
    _, _, model = inception_file
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("Mixed_7c")}
    cut = tmp_path / "cut.pth"
    torch.save(partial, cut)
    with pytest.raises(CheckpointMismatchError, match="Mixed_7c"):
        load_fid_inception(cut, expected_sha256=sha256_file(cut))
    pickled = tmp_path / "object.pth"
    torch.save({"model": WrongSignature()}, pickled)
    with pytest.raises(CorruptCheckpointError, match="not a torch state dict"):
        load_fid_inception(pickled, expected_sha256=sha256_file(pickled))
    with pytest.raises(CorruptCheckpointError, match=PT_INCEPTION.filename):
        load_fid_inception(tmp_path)


# ---- CLIP -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = tmp_path_factory.mktemp("clip-vit-tiny")
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": i + 256 for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    transformers.CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    config = transformers.CLIPConfig(
        text_config={"vocab_size": 514, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": 512,
                     "eos_token_id": 513, "pad_token_id": 513},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 224, "patch_size": 32},
        projection_dim=16)
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_normalize": True,
        "do_rescale": True, "do_resize": True, "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
        "resample": 3, "rescale_factor": 1 / 255, "size": {"shortest_edge": 224},
        "image_processor_type": "CLIPImageProcessor"}))
    return folder


def test_clip_preprocessing_matches_the_transformers_pil_processor():
    image_processing = pytest.importorskip("transformers.models.clip.image_processing_pil_clip")
    processor = image_processing.CLIPImageProcessorPil()
    g = torch.Generator().manual_seed(4)
    for h, w in ((64, 96), (300, 240)):
        frames = (torch.rand(2, h, w, 3, generator=g) * 255).round().to(torch.uint8).numpy()
        ours = clip_input(frames)
        ref = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        assert ours.shape == ref.shape == (2, 3, 224, 224)
        assert (ours - ref).abs().max() < 1e-5


def test_clip_loader_embeddings_and_clipsim(clip_folder):
    with pytest.warns(UserWarning, match="sha256 check skipped"):  # no published hash for a local folder
        clip = load_clip(clip_folder)
    assert clip.record.sha256 == sha256_file(clip_folder / "model.safetensors")
    v = video(2, 3, 48, 64, seed=5)
    frames = clip_frame_embeddings(clip, v, batch_size=4, progress=False)
    text = clip_text_embeddings(clip, ["a red ball moves left", "a blue square"])
    assert frames.shape == (2, 3, 16) and text.shape == (2, 16)
    uint8 = ((v[1, :, 2].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    with torch.no_grad():
        out = clip.model.get_image_features(pixel_values=clip_input(uint8[None]))
    direct = out if isinstance(out, torch.Tensor) else out.pooler_output
    assert np.abs(frames[1, 2] - direct[0].double().numpy()).max() < 1e-6
    assert -1 <= clipsim(frames, text) <= 1


def test_clip_long_captions_warn_and_bad_folders_are_refused(clip_folder, tmp_path):
    clip = load_clip(clip_folder, expected_sha256=sha256_file(clip_folder / "model.safetensors"))
    with pytest.warns(VocabularyWarning, match="longer than 77 tokens"):
        assert clip_text_embeddings(clip, ["x" * 100]).shape == (1, 16)
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_clip(clip_folder, expected_sha256="f" * 64)
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        load_clip(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UnsafeFormatError, match="pickle"):
        load_clip(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((clip_folder / "model.safetensors").read_bytes())
    (bad / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 256},
                                                              "crop_size": {"height": 256, "width": 256}}))
    with pytest.raises(ConfigError, match="224"):
        load_clip(bad, expected_sha256=clip.record.sha256)
