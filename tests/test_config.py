import re

import pytest

from vdmkit.config import dump_config
from vdmkit.training import load_config
from vdmkit.errors import ConfigError


def test_shipped_configs_load(tmp_path):
    for name in ("shapes", "demo", "tiny"):
        cfg = load_config(f"configs/{name}.yaml")
        assert cfg.model.spatial_factor and cfg.text.vocab
        assert "circle" in cfg.text.vocab


def test_yaml_round_trip(tmp_path):
    cfg = load_config("configs/shapes.yaml", ["train.steps=7", "model.channels=[32, 64, 96]", "data.bounce=false"])
    assert cfg.train.steps == 7 and cfg.model.channels == (32, 64, 96) and cfg.data.bounce is False
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("override, match", [
    ("train.stepz=3", "unknown key.*train.stepz"),
    ("train.steps=abc", "train.steps must be an integer"),
    ("train.steps=2.5", "train.steps must be an integer"),
    ("train.lr=-1", "lr"),
    ("model.channels=[30]", "head_dim"),
    ("backbone=resnet", "unknown backbone.*unet3d"),
    ("diffusion.prediction=score", "prediction.*eps"),
    ("data.size=30", "divisible by 4.*nearest valid: 32"),
    ("train.seed=-1", "seed"),
    ("nokey", "key=value"),
    ("train.precision=fp8", "precision"),
    ("train.warmup_steps=-1", "train.warmup_steps must be >= 0"),
    ("train.out_dir=", "train.out_dir is empty: name the run's folder"),  # it trained into the current folder
])
def test_bad_overrides_are_typed_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("configs/shapes.yaml", [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "cls.yaml").write_text("backbone: '!!python/object:os.system'\n")
    with pytest.raises(ConfigError, match="unknown backbone"):
        load_config(tmp_path / "cls.yaml")
    (tmp_path / "tag.yaml").write_text("backbone: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "tag.yaml")


def test_config_files_with_repeated_keys_folders_and_string_overrides_are_refused(tmp_path):
    """A key written twice silently kept the last value; a folder was "not found"; load_config(path, "a=b") took
    each character as an override (before 2026-12-06)."""
    (tmp_path / "twice.yaml").write_text("backbone: unet3d\ntrain:\n  steps: 4\n  steps: 8\n")
    with pytest.raises(ConfigError, match=r"config key 'steps' is written twice in one section \(line 4\)"):
        load_config(tmp_path / "twice.yaml")
    with pytest.raises(ConfigError, match="is a folder: give a YAML file"):
        load_config(tmp_path)
    with pytest.raises(TypeError, match="overrides must be a list"):
        load_config("configs/tiny.yaml", "train.steps=1")
    for override, match in (("text.dim=0", "text.dim must be >= 1"), ("text.heads=3", "multiple of text.heads=3")):
        with pytest.raises(ConfigError, match=match):
            load_config("configs/tiny.yaml", [override])


def test_an_empty_data_folder_says_so(tmp_path):
    """It was an internal "the run config is not resolved" error (before 2026-12-06)."""
    from vdmkit.errors import DatasetError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has none \\(no captioned sample found\\)"):
        load_config("configs/folder_tiny.yaml", [f"data.root={tmp_path / 'empty'}"])
    with pytest.raises(ConfigError, match="data.max_decode_errors must be >= 0"):
        load_config("configs/folder_tiny.yaml", [f"data.root={tmp_path}", "data.max_decode_errors=-1"])


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 2.5}, "steps must be int, got 2.5"), ({"batch_size": 2.0}, "batch_size must be int"),
    ({"seed": 2.5}, "seed must be int"), ({"steps": "3"}, "steps must be int, got '3'"),
    ({"grad_clip": 0}, r"grad_clip must be > 0 \(the largest gradient norm; .inf: no clipping\), got 0"),
    ({"grad_clip": -1.0}, "grad_clip must be > 0"), ({"grad_clip": float("nan")}, "grad_clip must be > 0.*got nan"),
    ({"lr": float("inf")}, "lr must be finite and > 0"), ({"weight_decay": -1.0}, "weight_decay must be"),
    ({"weight_decay": float("nan")}, "weight_decay must be.*got nan"),
])
def test_training_configs_built_in_python_are_checked_like_yaml_ones(kwargs, match):
    """grad_clip=0 trained nothing and -1 trained uphill, silently; steps=2.5 failed after the weights loaded."""
    from vdmkit.training.config import AETrainConfig, TrainConfig
    from vdmkit.training.distill import DistillSettings

    for cls in (TrainConfig, AETrainConfig, DistillSettings):
        with pytest.raises(ConfigError, match=match):
            cls(**kwargs)
        assert cls(grad_clip=float("inf")).grad_clip == float("inf")  # no clipping


@pytest.mark.parametrize("name", ["kl_weight", "gan_weight", "perceptual_weight", "weight_decay"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_autoencoder_loss_weights_are_finite(name, value):
    """train-vae took kl_weight=.nan and failed at step 0 blaming the learning rate; gan_weight=.nan and
    perceptual_weight=.nan trained without their term, the config recording NaN (2026-12-06)."""
    from vdmkit.training.config import AETrainConfig

    with pytest.raises(ConfigError, match=f"train.{name} must be a finite number >= 0"):
        AETrainConfig(**{name: value})
    assert getattr(AETrainConfig(**{name: 0.0}), name) == 0.0


@pytest.mark.parametrize("text, line, kind", [
    ("? [1, 2]\n: 3\n", 1, "list"), ("backbone: unet3d\n? {a: 1}\n: 2\n", 2, "mapping"),
    ("train:\n  steps: 4\n  ? [1]\n  : 2\n", 3, "list"),
])
def test_a_list_or_mapping_written_as_a_key_is_named_with_its_file_and_line(tmp_path, text, line, kind):
    """`? [1, 2]` was a raw "unhashable type" TypeError from the strict loader, for every command reading a config."""
    (tmp_path / "k.yaml").write_text(text)
    file = re.escape(str(tmp_path / "k.yaml"))
    with pytest.raises(ConfigError, match=rf"^config file '{file}': config key .* \(line {line}\) is a {kind}, not a "
                                          "name: write the key as a plain word$"):
        load_config(tmp_path / "k.yaml")


def test_an_override_value_is_read_as_strictly_as_a_file():
    """train.lora={rank: 4, rank: 8} took rank 8 unsaid, where the same mapping in a file is refused (a review)."""
    from vdmkit.training import load_config

    with pytest.raises(ConfigError, match="override 'train.lora=.rank: 4, rank: 8.': config key 'rank' is written "
                                          "twice"):
        load_config("configs/tiny.yaml", ["train.init_from=default", "train.lora={rank: 4, rank: 8}"])


def test_overrides_given_as_one_string_are_a_config_error():
    """load_config(path, "train.steps=3") raised a plain TypeError, not a vdmkit error; it stays a TypeError too."""
    from vdmkit.config import apply_overrides

    for call in (lambda: load_config("configs/tiny.yaml", "train.steps=3"), lambda: apply_overrides({}, "a=b")):
        with pytest.raises(ConfigError, match=r"overrides must be a list of key=value strings, got the string '.*=.*'"
                                              r": pass \['.*'\]$") as caught:
            call()
        assert isinstance(caught.value, TypeError)


def test_a_run_s_own_config_takes_overrides_into_its_null_sections(tmp_path):
    """A run's config.yaml writes `lora: null` and `condition: null`; train.lora.rank=4 on it was "'lora' is not a
    section" where configs/tiny.yaml took it (a review, 2026-12-06)."""
    import yaml

    from vdmkit.config import apply_overrides
    from vdmkit.training import load_config
    from vdmkit.training.config import to_dict

    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(to_dict(load_config("configs/tiny.yaml"))))
    assert "lora: null" in saved.read_text()
    cfg = load_config(saved, ["train.init_from=default", "train.lora.rank=4", "data.frames=4"])
    assert cfg.train.lora.rank == 4
    assert apply_overrides({"data": {"condition": None}}, ["data.condition.low_res=2"]) == \
        {"data": {"condition": {"low_res": 2}}}
    with pytest.raises(ConfigError, match="'steps' is not a section"):
        apply_overrides({"train": {"steps": 3}}, ["train.steps.x=1"])


def test_an_empty_config_file_points_to_the_shipped_config_of_its_kind(tmp_path):
    """An empty cascade or autoencoder file was pointed to configs/tiny.yaml and configs/shapes.yaml, training configs
    of another kind (sweep 20F)."""
    from vdmkit.config import read_config
    from vdmkit.pipelines.cascade import CascadeConfig
    from vdmkit.training import AERunConfig, RunConfig

    empty = tmp_path / "e.yaml"
    empty.write_text("# nothing\n")
    for cls, shipped in ((CascadeConfig, "configs/cascade.yaml"), (AERunConfig, "configs/vae_frame.yaml, "
                                                                                "configs/vae_video.yaml"),
                         (RunConfig, "configs/tiny.yaml, configs/shapes.yaml")):
        with pytest.raises(ConfigError, match=rf"is empty: it would run every default. Start from a shipped config "
                                              rf"\({shipped}\) and write"):
            read_config(cls, empty)
