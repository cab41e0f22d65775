"""Conditioning: text encoders and condition dropout."""

from vdmkit.conditioning.text import TextCondition, WordEncoderConfig, WordTextEncoder, WordTokenizer, split_words

__all__ = ["TextCondition", "WordEncoderConfig", "WordTextEncoder", "WordTokenizer", "split_words"]
