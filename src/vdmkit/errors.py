"""Typed errors. Every message names the offending file or parameter, its value, and what to do."""

from __future__ import annotations


class VdmkitError(Exception):
    """Base class of every error vdmkit raises on purpose."""


class ConstraintError(VdmkitError, ValueError):
    """A size, frame count or other parameter the model or component cannot take."""


class ConfigError(VdmkitError, ValueError):
    """A configuration key, value or override that is unknown or malformed."""


class InvalidVideoError(VdmkitError, ValueError):
    """A video tensor or file that breaks the video contract or cannot be decoded."""


class OutputError(VdmkitError, ValueError):
    """An output path that cannot be written: unknown format, a folder, below a regular file, or unwritable."""


class DeviceError(VdmkitError, ValueError):
    """A device that is unknown or not on this machine (``--device cuda`` without CUDA, ``mps`` off a Mac)."""


class OutOfMemoryError(VdmkitError, MemoryError):
    """A device (or the CPU) ran out of memory; the message says what to lower so that the work fits."""


class CorruptCheckpointError(VdmkitError):
    """A checkpoint file that is missing, truncated, not safetensors, or fails its manifest."""


class CheckpointMismatchError(VdmkitError):
    """A checkpoint whose tensors do not match the model it is loaded into."""


class UnsafeFormatError(VdmkitError):
    """A refused format: pickle weights, or a config naming something outside the registry."""


class UnknownAdapterError(VdmkitError, KeyError):
    """A LoRA adapter name the model does not have (a KeyError too, as it was)."""

    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0]) if self.args else ""


class NonFiniteError(VdmkitError, FloatingPointError):
    """NaN or inf appeared in a tensor during training or sampling."""


class DatasetError(VdmkitError):
    """A dataset that is empty, misconfigured, or has nothing usable after filtering."""


class DistributedError(VdmkitError, RuntimeError):
    """A multi-process run that cannot go on: a peer process died or hangs past the timeout, or the launch
    environment is malformed. Names the rank that reports it; ``--resume`` continues from the last checkpoint."""


class VocabularyWarning(UserWarning):
    """A prompt had words the text encoder does not know, or was cut to the maximum length."""


class VdmkitDeprecationWarning(DeprecationWarning):
    """An API that will be removed."""


class SampleCountWarning(UserWarning):
    """A metric computed from fewer samples than its protocol needs: the value is biased and not comparable."""


class ClassSetWarning(UserWarning):
    """A class-conditional evaluation whose real and fake sets cover different classes: not comparable."""
