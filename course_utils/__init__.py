"""The small library behind the course's lessons: one implementation of each idea.

Taught in: every lesson (the public names: ``load_model``, ``MiniGPT``, ``generate``...).
"""

from .generation import generate
from .hub import load_model, load_tokenizer
from .llama import LlamaConfig, MiniLlama
from .model import GPTConfig, MiniGPT

__all__ = ["GPTConfig", "LlamaConfig", "MiniGPT", "MiniLlama", "generate", "load_model", "load_tokenizer"]
__version__ = "0.1.0"
