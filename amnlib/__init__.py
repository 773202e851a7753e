"""amnlib: hybrid neural-mechanistic models of metabolism (Artificial Metabolic Networks)."""

from amnlib.data import fetch, load_model
from amnlib.network import FluxResult, MetabolicNetwork

__all__ = ["FluxResult", "MetabolicNetwork", "fetch", "load_model"]
__version__ = "0.1.0"
