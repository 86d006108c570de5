"""Quality of a (model, precision, kv) beside its safety: perplexity on a fixed text
(``text_perplexity``) and task accuracy through lm-evaluation-harness (``tasks``), with the lm-eval
model that scores a GGUF precision in-process through llama.cpp (``lm_eval_llama_cpp``, registered
with lm-eval as ``safetygrid-llama-cpp`` when that module is imported).

Names are imported when first used (torch, transformers and lm-eval load only in the job that needs
them): ``from safetygrid.quality import perplexity`` works, and so does
``safetygrid.quality.tasks.task_accuracy``. No module is named like a name it exports, so the
lazily imported module never shadows the name on the package.
"""

from __future__ import annotations

from ..registry import lazy_attributes

_EXPORTS = {
    "perplexity": "text_perplexity", "make_cache": "text_perplexity",
    "task_accuracy": "tasks", "check_task_names": "tasks", "TaskError": "tasks", "ACCURACY_METRICS": "tasks",
    "LlamaCppLM": "lm_eval_llama_cpp", "MODEL_NAME": "lm_eval_llama_cpp", "NoChatTemplate": "lm_eval_llama_cpp",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
