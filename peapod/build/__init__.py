"""``peapod build``: Containerfile parsing, build steps on the node's runtime, layer diffing and cache."""

from .builder import Builder, BuildOptions, BuildResult
from .cache import BuildCache, CachedLayer, cache_key
from .containerfile import Containerfile, Instruction, parse
from .diff import DiffResult, write_diff
from .errors import BuildError, ContainerfileError
from .push import push_image
from .store import BuildStore, NodeImages, write_layout
from .words import expand_word, expand_words

__all__ = [
    "BuildCache", "BuildError", "BuildOptions", "BuildResult", "BuildStore", "Builder", "CachedLayer",
    "Containerfile", "ContainerfileError", "DiffResult", "Instruction", "NodeImages", "cache_key",
    "expand_word", "expand_words", "parse", "push_image", "write_diff", "write_layout",
]
