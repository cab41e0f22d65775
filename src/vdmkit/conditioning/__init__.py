"""Conditioning: the one Condition a backbone takes, and the text encoders that fill its prompt."""

from vdmkit.conditioning.condition import Condition, as_condition
from vdmkit.conditioning.text import TextCondition, WordEncoderConfig, WordTextEncoder, WordTokenizer, split_words

__all__ = ["Condition", "TextCondition", "WordEncoderConfig", "WordTextEncoder", "WordTokenizer", "as_condition",
           "split_words"]
