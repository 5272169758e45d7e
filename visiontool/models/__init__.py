"""Models: the name registry, the project's own architectures and the loader.

Importing this package imports no torch; `registry.build` and `loader.load_model` do when called.
"""

from visiontool.models.loader import LoadedModel, ModelInfo, load_model
from visiontool.models.registry import ModelSpec, build, get_spec, list_specs

__all__ = ["LoadedModel", "ModelInfo", "ModelSpec", "build", "get_spec", "list_specs", "load_model"]
