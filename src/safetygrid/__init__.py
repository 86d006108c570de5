"""safetygrid: safety of LLMs under quantization, KV-cache quantization and sampling."""

__version__ = "0.1.0"
